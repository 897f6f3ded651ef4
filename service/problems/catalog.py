"""Every problem type the API emits, with English and Chinese wording.

The ``detail`` strings are fixed sentences: a problem never carries the client's
input back, so nothing a client sends can be reflected into a response.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProblemKind:
    slug: str
    status: int
    title_en: str
    title_zh: str
    detail_en: str
    detail_zh: str


def _kind(
    slug: str, status: int, title_en: str, title_zh: str, detail_en: str, detail_zh: str
) -> ProblemKind:
    return ProblemKind(slug, status, title_en, title_zh, detail_en, detail_zh)


CATALOG: dict[str, ProblemKind] = {
    k.slug: k
    for k in (
        _kind(
            "invalid-uscc",
            422,
            "Invalid Unified Social Credit Code",
            "统一社会信用代码无效",
            "The code is not a valid GB 32100-2015 Unified Social Credit Code.",
            "该代码不是有效的统一社会信用代码（GB 32100-2015）。",
        ),
        _kind(
            "merchant-not-found",
            404,
            "Merchant not found",
            "未找到该市场主体",
            "The registry holds no merchant with this code.",
            "信用信息库中没有该统一社会信用代码对应的市场主体。",
        ),
        _kind(
            "unauthorized",
            401,
            "Unauthorized",
            "未认证",
            "A valid bearer access token is required.",
            "需要有效的 Bearer 访问令牌。",
        ),
        _kind(
            "forbidden",
            403,
            "Forbidden",
            "无权访问",
            "The access token does not grant the scope this operation needs.",
            "访问令牌未授予此操作所需的权限范围。",
        ),
        _kind(
            "purpose-not-allowed",
            403,
            "Purpose not allowed",
            "查询目的未获授权",
            "This client is not allowed to make checks for this purpose.",
            "该客户端未获授权以此目的进行查询。",
        ),
        _kind(
            "quota-exceeded",
            429,
            "Daily quota exceeded",
            "已超出每日配额",
            "What is left of the client's daily quota does not cover this request (the"
            " RateLimit header says how much is left); it resets at midnight Asia/Shanghai.",
            "该客户端今日剩余配额不足以完成本次请求（剩余额度见 RateLimit 响应头），"
            "将于北京时间零点重置。",
        ),
        _kind(
            "rate-limited",
            429,
            "Too many requests",
            "请求过于频繁",
            "The client is sending requests faster than its rate plan allows.",
            "该客户端的请求速率超出其速率方案的限制。",
        ),
        _kind(
            "payload-too-large",
            413,
            "Payload too large",
            "请求体过大",
            "The request body exceeds the size this endpoint accepts.",
            "请求体超过此接口允许的大小。",
        ),
        _kind(
            "validation-failed",
            422,
            "Validation failed",
            "请求参数校验失败",
            "The request does not match the schema of this operation.",
            "请求内容不符合此接口的格式要求。",
        ),
        _kind(
            "not-found",
            404,
            "Not found",
            "资源不存在",
            "No resource exists at this address for this client.",
            "该地址下没有此客户端可访问的资源。",
        ),
        _kind(
            "method-not-allowed",
            405,
            "Method not allowed",
            "不支持的请求方法",
            "This resource does not support the request method.",
            "该资源不支持此请求方法。",
        ),
        _kind(
            "unsupported-media-type",
            415,
            "Unsupported media type",
            "不支持的媒体类型",
            "The request body must be sent with the content type this operation accepts.",
            "请求体的内容类型不被此接口接受。",
        ),
        _kind(
            "not-acceptable",
            406,
            "Not acceptable",
            "无法提供可接受的格式",
            "The requested format is not available for this resource.",
            "此资源无法以所请求的格式提供。",
        ),
        _kind(
            "conflict",
            409,
            "Conflict",
            "请求冲突",
            "The request conflicts with the current state of the resource.",
            "请求与资源的当前状态冲突。",
        ),
        _kind(
            "audit-unavailable",
            503,
            "Audit trail unavailable",
            "审计日志不可用",
            "The request could not be recorded in the audit trail, so it was refused.",
            "该请求无法写入审计日志，因此被拒绝。",
        ),
        _kind(
            "service-unavailable",
            503,
            "Service unavailable",
            "服务暂不可用",
            "A component the service depends on is unavailable; retry later.",
            "服务依赖的组件暂不可用，请稍后重试。",
        ),
        _kind(
            "internal-error",
            500,
            "Internal error",
            "内部错误",
            "The request failed unexpectedly; quote the request id when reporting it.",
            "请求意外失败，报告问题时请提供请求编号。",
        ),
    )
}
