"""``funnelcast demo``: the whole pipeline on embedded moto under a simulated clock.

Modules: :mod:`clock` (simulated time), :mod:`requests` (AWS requests counted with botocore event
hooks), :mod:`scheduler` (fires what EventBridge Scheduler would, read from the scheduler API),
:mod:`dispatcher` (drains SQS queues into handlers as the Lambda event source mapping would),
:mod:`customers` (simulated reactions), :mod:`outputs` (files in ``--out``), :mod:`runner`.
"""
