"""Compliance and rendering: ad label, opt-out text, SMS/LMS sizing, unsubscribe tokens, strict Liquid."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnelcast.errors import TemplateRenderError
from funnelcast.rules.models import Compliance, Message, Purpose
from funnelcast.sending.compliance import (
    LMS_MAX_BYTES,
    euc_kr_length,
    labelled_text,
    shape_sms,
    sign_send_id,
    unsubscribe_url,
    verify_token,
)
from funnelcast.sending.render import RenderRequest, render_message

COMPLIANCE = Compliance(ad_label="(광고)", opt_out_text="무료수신거부 080-000-0000")


def test_advertising_sms_gets_label_and_opt_out() -> None:
    # Given an advertising SMS, When labelled, Then label first and opt-out last
    text = labelled_text("세일 시작!", channel="sms", purpose=Purpose.ADVERTISING, compliance=COMPLIANCE)
    assert text == "(광고) 세일 시작!\n무료수신거부 080-000-0000"


def test_advertising_email_gets_label_but_no_opt_out_and_informational_is_untouched() -> None:
    assert labelled_text("Sale", channel="email", purpose="advertising", compliance=COMPLIANCE) == "(광고) Sale"
    assert labelled_text("배송 안내", channel="sms", purpose="informational", compliance=COMPLIANCE) == "배송 안내"


def test_label_not_doubled() -> None:
    text = labelled_text("(광고) 세일", channel="kakao_brand", purpose="advertising", compliance=COMPLIANCE)
    assert text.count("(광고)") == 1


def test_sms_becomes_lms_over_90_bytes_and_fails_over_2000() -> None:
    # Given 45 Hangul (90 bytes) vs 46 Hangul (92 bytes) vs 1001 Hangul
    assert shape_sms("가" * 45).kind == "SMS"
    lms = shape_sms("가" * 46, subject="제목")
    assert (lms.kind, lms.subject, lms.size_bytes) == ("LMS", "제목", 92)
    with pytest.raises(TemplateRenderError, match="sms_too_long"):
        shape_sms("가" * (LMS_MAX_BYTES // 2 + 1))


def test_euc_kr_counts_unencodable_as_two_bytes() -> None:
    assert euc_kr_length("a가") == 3
    assert euc_kr_length("a😀") == 3


@given(st.text(alphabet="0123456789abcdef", min_size=1, max_size=24), st.binary(min_size=1, max_size=32))
def test_unsubscribe_token_round_trips_and_rejects_tampering(send_id: str, secret: bytes) -> None:
    token = sign_send_id(send_id, secret)
    assert verify_token(token, secret) == send_id
    assert verify_token(token + "x", secret) is None
    assert verify_token(token, secret + b"!") is None


def _request(
    template: str, purpose: Purpose = Purpose.ADVERTISING, channel: str = "sms", **extra: str
) -> RenderRequest:
    return RenderRequest(
        rules_hash="h" * 16,
        campaign_id="cart",
        variant_id="a",
        channel=channel,
        purpose=purpose,
        send_id="abc123",
        message=Message(template=template, **extra),
        compliance=COMPLIANCE,
        variables={"name": "김민수"},
        link="https://shop.example/c",
    )


def test_render_uses_variables_link_and_compliance() -> None:
    rendered = render_message(_request("{{ name }}님 {{ link }} {{ campaign_id }}"))
    assert rendered.body == "(광고) 김민수님 https://shop.example/c cart\n무료수신거부 080-000-0000"
    assert rendered.sms_kind == "SMS"  # 69 bytes EUC-KR with label and opt-out


def test_missing_variable_fails_unless_default() -> None:
    with pytest.raises(TemplateRenderError, match="product"):
        render_message(_request("{{ product }}"))
    rendered = render_message(_request('{{ product | default: "상품" }}', purpose=Purpose.INFORMATIONAL))
    assert rendered.body == "상품"


def test_template_that_does_not_parse_is_a_template_error() -> None:
    with pytest.raises(TemplateRenderError, match="does not parse"):
        render_message(_request("{% if %}"))


def test_advertising_email_has_one_click_unsubscribe_headers() -> None:
    request = _request("hi", channel="email", subject="Sale")
    rendered = render_message(request, unsubscribe_base_url="https://u.example/unsub", unsubscribe_secret=b"k")
    assert rendered.subject == "(광고) Sale"
    assert rendered.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    expected = unsubscribe_url("https://u.example/unsub", "abc123", b"k")
    assert rendered.headers["List-Unsubscribe"] == f"<{expected}>"
    with pytest.raises(TemplateRenderError, match="UNSUBSCRIBE_BASE_URL"):
        render_message(request)


def test_templates_cannot_reach_python_objects() -> None:
    # Given a variable that is a Python object, When rendered, Then only its JSON text is visible
    class Secretive:
        token = "s3cr3t"

        def __str__(self) -> str:
            return "plain"

    request = RenderRequest(**{**_request("{{ obj.token }}|{{ obj }}").__dict__, "variables": {"obj": Secretive()}})
    with pytest.raises(TemplateRenderError):
        render_message(request)
