"""Local stand-ins for AWS: template.yaml's resources in moto (tests and the demo)."""
