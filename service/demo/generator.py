"""Deterministic synthetic registry: merchants and credit records as NDJSON import lines.

``generate(n, seed)`` yields dicts in the line shapes of ``POST /v1/admin/imports``
(CONTRACT.md, "Administration"): each merchant line is followed by that merchant's
record lines. The same ``(n, seed)`` always gives the same output, on any machine and
any day: every date is derived from the fixed :data:`REFERENCE_DATE`, never from today.

Design notes:

* Codes are valid GB 32100 codes and never collide. The 8-character organisation
  body is a bijection of the merchant index (an affine permutation of 0..10^8-1,
  written either as 8 digits or, for registrations since 2016, as "MA" plus six
  base-31 characters; the two forms cannot overlap because one starts with a digit
  and the other with "M"). The GB 11714 check digit of the organisation code is
  also correct, so demo data raises no warnings.
* Everything is pure Python with one ``random.Random(seed)`` and table look-ups, so
  a million merchants take seconds, not minutes. Only exactly rounded float
  operations (+, *, /, comparisons) are used on the draws, no ``**``/``exp`` from
  the platform's libm, so the output is the same on every machine.
* Record dates follow DOMAIN.md: publicity periods of at most 3 months (MINOR),
  3-12 months (GENERAL) or 1-3 years (SERIOUS), counted from ``decided_on``.
  Records whose period ended before the reference date are mostly ``EXPIRED``; a
  few stay ``ACTIVE`` as stale source data do, which the verdict must ignore
  because of ``publicity_until``. ``REPAIRED`` only occurs after the minimum
  period. ``HONOR`` (positive) records use GENERAL with a one-year validity.
* Names, people and addresses are invented from small tables. The published
  example codes in :data:`PUBLISHED_EXAMPLES` belong to real companies, so they
  carry obviously fictitious demo names rather than the real ones.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from itertools import accumulate
from random import Random
from typing import Final, Generic, NamedTuple, TypeVar

from schemas.uscc import ALPHABET, check_character, organisation_code_check_digit
from service.policy.engine import add_months

__all__ = [
    "DEFAULT_SEED",
    "MAX_MERCHANTS",
    "PUBLISHED_EXAMPLES",
    "REFERENCE_DATE",
    "add_months",
    "demo_registry",
    "generate",
]

DEFAULT_SEED: Final = 20261129
REFERENCE_DATE: Final = date(2026, 11, 1)
"""All generated dates are relative to this day, so output does not depend on the clock."""
_REF_ORD: Final = REFERENCE_DATE.toordinal()

_ORG_SPACE: Final = 10**8
MAX_MERCHANTS: Final = _ORG_SPACE
"""Upper bound of ``merchants``: beyond it the organisation bodies would repeat."""

# Odd and not a multiple of 5, hence coprime to 10^8: i -> (i * M + offset) mod 10^8
# is a permutation, so distinct indexes get distinct organisation bodies.
_ORG_MULTIPLIER: Final = 48_271_937

_T = TypeVar("_T")


class _Weighted(Generic[_T]):
    """Weighted choice by a single ``random()`` draw (cheaper than Random.choices)."""

    __slots__ = ("_cum", "_items")

    def __init__(self, weighted: Sequence[tuple[_T, float]]) -> None:
        self._items = [item for item, _ in weighted]
        cum = list(accumulate(w for _, w in weighted))
        total = cum[-1]
        self._cum = [c / total for c in cum]
        # Exactly 1.0, so that bisect on any r in [0, 1) stays in range.
        self._cum[-1] = 1.0

    def pick(self, r: float) -> _T:
        return self._items[bisect(self._cum, r)]


def _words(text: str) -> tuple[str, ...]:
    """A table of whitespace-separated words (more readable than a literal for Chinese)."""
    return tuple(text.split())


# --- registry tables ---------------------------------------------------------------


class _District(NamedTuple):
    code: str
    name: str
    short: str  # 河西区 -> 河西, 滨海新区 -> 滨海
    court_code: str  # case-number code of the district court, e.g. 津0103
    intermediate: int  # 1, 2 or 3: which intermediate court hears its appeals
    rural: bool


_DISTRICT_TABLE: Final[tuple[tuple[_District, float], ...]] = (
    (_District("120101", "和平区", "和平", "0101", 2, False), 5),
    (_District("120102", "河东区", "河东", "0102", 2, False), 7),
    (_District("120103", "河西区", "河西", "0103", 2, False), 9),
    (_District("120104", "南开区", "南开", "0104", 1, False), 9),
    (_District("120105", "河北区", "河北", "0105", 2, False), 6),
    (_District("120106", "红桥区", "红桥", "0106", 1, False), 4),
    (_District("120110", "东丽区", "东丽", "0110", 2, True), 6),
    (_District("120111", "西青区", "西青", "0111", 1, True), 7),
    (_District("120112", "津南区", "津南", "0112", 2, True), 6),
    (_District("120113", "北辰区", "北辰", "0113", 1, True), 6),
    (_District("120114", "武清区", "武清", "0114", 1, True), 8),
    (_District("120115", "宝坻区", "宝坻", "0115", 2, True), 5),
    (_District("120116", "滨海新区", "滨海", "0116", 3, True), 16),
    (_District("120117", "宁河区", "宁河", "0117", 2, True), 3),
    (_District("120118", "静海区", "静海", "0118", 1, True), 4),
    (_District("120119", "蓟州区", "蓟州", "0119", 2, True), 4),
)
_DISTRICTS: Final = _Weighted(_DISTRICT_TABLE)
_RURAL_DISTRICTS: Final = _Weighted([(d, w) for d, w in _DISTRICT_TABLE if d.rural])

_INTERMEDIATE_COURTS: Final = {
    1: ("天津市第一中级人民法院", "01"),
    2: ("天津市第二中级人民法院", "02"),
    3: ("天津市第三中级人民法院", "03"),
}


class _EntityKind(NamedTuple):
    prefix: str
    entity_type: str


_COMPANY: Final = _EntityKind("91", "COMPANY")
_INDIVIDUAL: Final = _EntityKind("92", "INDIVIDUAL_BUSINESS")
_COOPERATIVE: Final = _EntityKind("93", "COOPERATIVE")
_SOCIAL: Final = _EntityKind("52", "SOCIAL_ORGANIZATION")
_PUBLIC: Final = _EntityKind("12", "PUBLIC_INSTITUTION")
_ENTITY_KINDS: Final = _Weighted(
    [(_COMPANY, 79.0), (_INDIVIDUAL, 15.0), (_COOPERATIVE, 3.0), (_SOCIAL, 1.5), (_PUBLIC, 1.5)]
)

_REGISTRATION_STATUS: Final = _Weighted([("ACTIVE", 97.0), ("REVOKED", 2.0), ("DEREGISTERED", 1.0)])

# Common surnames, roughly in order of frequency.
_SURNAMES: Final = _Weighted(
    [
        (s, 60.0 - i)
        for i, s in enumerate(
            "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
        )
    ]
)
_GIVEN_NAMES: Final = _words(
    "伟 芳 娜 秀英 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 "
    "秀兰 霞 平 刚 桂英 建国 建华 志强 海燕 文 华 红 玉兰 国庆 淑珍 "
    "春梅 立新 宏 鹏 宇 浩 博 晨 欣怡 子轩 梓涵 雨桐 金凤 学军 振华 "
    "桂芝 德胜 凤英 俊杰 晓东 永利 玉梅 宝山 立国 海龙 金海 淑华 建军 "
    "丽娟 红梅"
)

_TRADE_FIRST: Final = "华鑫瑞恒泰盛宏昌永兴隆达润丰嘉信诚德宇航海博远通顺安康晟元佳瀚津港渤中"
_TRADE_SECOND: Final = "源泰达盛丰和利通信科创诚宇宏业辉成发祥汇邦联合美亿德隆顺晖"
_COMPANY_INDUSTRIES: Final = _words(
    "科技 商贸 物流 建筑工程 餐饮管理 电子商务 供应链管理 信息技术 "
    "再生资源回收 货运代理 人力资源服务 机械设备 食品 汽车服务 网络科技 "
    "文化传媒 环保科技 医药 房地产经纪 装饰工程 国际贸易 农业发展 "
    "新能源科技 仓储服务 钢铁贸易 自行车 劳务派遣 冷链物流 软件开发"
)
_COMPANY_SUFFIX: Final = _Weighted(
    [("有限公司", 84.0), ("有限责任公司", 10.0), ("股份有限公司", 4.0), ("集团有限公司", 2.0)]
)
_SHOPS: Final = _words(
    "餐馆 小吃店 便利店 五金店 理发店 水果店 烟酒店 汽车修理部 服装店 "
    "早点铺 副食店 废品回收站 快递服务部 干洗店 煎饼果子铺 包子铺 烧烤店 "
    "家电维修部 建材店 超市"
)
_COOP_PRODUCE: Final = _words(
    "蔬菜种植 果品种植 食用菌种植 水产养殖 生猪养殖 农机服务 葡萄种植 "
    "小站稻种植 肉羊养殖 苗木种植 蛋鸡养殖"
)
_SOCIAL_NAMES: Final = _words(
    "培训学校 养老院 社会工作服务中心 幼儿园 康复中心 职业技能培训学校 社区服务中心"
)
_PUBLIC_NAMES: Final = _words(
    "卫生健康服务中心 图书馆 文化馆 职业教育中心 农业技术推广中心 "
    "社区卫生服务中心 政务服务中心 水务服务中心 档案馆 就业服务中心"
)
_ROADS: Final = _words(
    "友谊路 卫津路 南京路 解放北路 黄河道 红旗路 津塘路 第二大街 京津路 "
    "复康路 大沽南路 中山路 成都道 昆明路 紫金山路 津滨大道 杨柳青大街 "
    "泉州路 外环北路 雅安道 广开四马路 新华路 振华道 海河东路 宝平街 "
    "渔阳北路 开发区第三大街 杨村镇光明道"
)
_BUILDINGS: Final = _words("商务中心 科技大厦 国际广场 创业园 产业园 综合楼 商厦")


# --- credit record tables ----------------------------------------------------------

_SEVERITY_MONTHS: Final = {
    # Publicity period (months from decided_on) per severity, with typical weights.
    "MINOR": _Weighted([(3, 6.0), (2, 1.0), (1, 1.0)]),
    "GENERAL": _Weighted([(6, 4.0), (12, 4.0), (3, 1.0), (9, 1.0)]),
    "SERIOUS": _Weighted([(36, 6.0), (24, 2.0), (12, 2.0)]),
}
_MIN_MONTHS_BEFORE_REPAIR: Final = {"MINOR": 0, "GENERAL": 3, "SERIOUS": 12}


class _Issuer(NamedTuple):
    source: str
    authority: str  # may contain {district}, {court}
    document: str  # may contain {year}, {n}, {court_code}, {district_short}
    district_level: bool = False


_COURT_ENFORCEMENT: Final = _Issuer("court", "{court}", "({year})津{court_code}执{n}号")
_COURT_CIVIL: Final = _Issuer("court", "{court}", "({year})津{court_code}民初{n}号")
_MARKET_CITY: Final = _Issuer(
    "market_regulation", "天津市市场监督管理委员会", "津市监罚〔{year}〕{n}号"
)
_MARKET_DISTRICT: Final = _Issuer(
    "market_regulation",
    "天津市{district}市场监督管理局",
    "津{district_short}市监罚〔{year}〕{n}号",
    district_level=True,
)
_MARKET_ABNORMAL: Final = _Issuer(
    "market_regulation",
    "天津市{district}市场监督管理局",
    "津{district_short}市监异〔{year}〕{n}号",
    district_level=True,
)
_MARKET_SERIOUS: Final = _Issuer(
    "market_regulation", "天津市市场监督管理委员会", "津市监严〔{year}〕{n}号"
)
_MARKET_HONOR: Final = _Issuer(
    "market_regulation", "天津市市场监督管理委员会", "津市监信〔{year}〕{n}号"
)
_TAX_PENALTY: Final = _Issuer("tax", "国家税务总局天津市税务局", "津税稽罚〔{year}〕{n}号")
_TAX_MAJOR: Final = _Issuer(
    "tax", "国家税务总局天津市税务局第一稽查局", "津税一稽处〔{year}〕{n}号"
)
_TAX_HONOR: Final = _Issuer("tax", "国家税务总局天津市税务局", "津税信〔{year}〕{n}号")
_HRSS: Final = _Issuer("hrss", "天津市人力资源和社会保障局", "津人社监〔{year}〕{n}号")
_HRSS_ARREARS: Final = _Issuer("hrss", "天津市社会保险基金管理中心", "津社保欠〔{year}〕{n}号")
_POLICE: Final = _Issuer(
    "police",
    "天津市公安局{district_short}分局",
    "津公{district_short}行罚决字〔{year}〕{n}号",
    True,
)
_ECOLOGY: Final = _Issuer("ecology_environment", "天津市生态环境局", "津环罚〔{year}〕{n}号")
_EMERGENCY: Final = _Issuer("emergency_management", "天津市应急管理局", "津应急罚〔{year}〕{n}号")
_CREDIT_CENTER: Final = _Issuer(
    "credit_center", "天津市公共信用信息中心", "津信用承诺〔{year}〕{n}号"
)
_CREDIT_HONOR: Final = _Issuer(
    "credit_center", "天津市发展和改革委员会", "津发改信用〔{year}〕{n}号"
)


_Summaries = tuple[str, ...]  # each may contain {amount} and {year} (the year before)


class _Category(NamedTuple):
    code: str
    severities: _Weighted[str]
    # Who issues it, and what that issuer writes: a tax bureau never reports emissions.
    issuers: _Weighted[tuple[_Issuer, _Summaries]]


def _sev(minor: float, general: float, serious: float) -> _Weighted[str]:
    return _Weighted(
        [(s, w) for s, w in (("MINOR", minor), ("GENERAL", general), ("SERIOUS", serious)) if w]
    )


def _only(issuer: _Issuer, *summaries: str) -> _Weighted[tuple[_Issuer, _Summaries]]:
    return _Weighted([((issuer, summaries), 1.0)])


_CATEGORIES: Final = _Weighted(
    [
        (
            _Category(
                "ADMINISTRATIVE_PENALTY",
                _sev(45, 45, 10),
                _Weighted(
                    [
                        (
                            (
                                _MARKET_DISTRICT,
                                (
                                    "销售不符合食品安全标准的食品，没收违法所得并罚款{amount}元",
                                    "发布虚假广告，责令停止发布并罚款{amount}元",
                                    "未取得许可从事经营活动，罚款{amount}元",
                                    "销售明知是侵犯注册商标专用权的商品，罚款{amount}元",
                                ),
                            ),
                            45.0,
                        ),
                        (
                            (
                                _MARKET_CITY,
                                (
                                    "生产不符合保障人体健康标准的产品，罚款{amount}元",
                                    "实施不正当竞争行为，罚款{amount}元",
                                ),
                            ),
                            10.0,
                        ),
                        (
                            (
                                _TAX_PENALTY,
                                (
                                    "未按期办理纳税申报，罚款{amount}元",
                                    "未按规定开具发票，罚款{amount}元",
                                ),
                            ),
                            15.0,
                        ),
                        (
                            (
                                _HRSS,
                                (
                                    "未依法与劳动者订立书面劳动合同，罚款{amount}元",
                                    "克扣或者无故拖欠劳动者工资，责令支付并加付赔偿金",
                                ),
                            ),
                            8.0,
                        ),
                        ((_POLICE, ("违反消防安全管理规定，罚款{amount}元",)), 8.0),
                        ((_ECOLOGY, ("超标排放大气污染物，罚款{amount}元",)), 8.0),
                        ((_EMERGENCY, ("未按规定开展安全生产教育培训，罚款{amount}元",)), 6.0),
                    ]
                ),
            ),
            34.0,
        ),
        (
            _Category(
                "ABNORMAL_OPERATION",
                _sev(30, 70, 0),
                _only(
                    _MARKET_ABNORMAL,
                    "未按规定期限公示{year}年度报告",
                    "通过登记的住所或者经营场所无法联系",
                    "未在责令的期限内公示有关企业信息",
                    "公示企业信息隐瞒真实情况、弄虚作假",
                ),
            ),
            16.0,
        ),
        (
            _Category(
                "JUDGMENT_DEBTOR",
                _sev(40, 60, 0),
                _only(
                    _COURT_ENFORCEMENT,
                    "被申请强制执行，执行标的{amount}元",
                    "未履行生效判决确定的给付义务，执行标的{amount}元",
                ),
            ),
            12.0,
        ),
        (
            _Category(
                "COURT_CASE",
                _sev(50, 50, 0),
                _only(
                    _COURT_CIVIL,
                    "买卖合同纠纷（被告），标的额{amount}元",
                    "劳动争议（被告）",
                    "房屋租赁合同纠纷（被告），标的额{amount}元",
                    "运输合同纠纷（被告），标的额{amount}元",
                ),
            ),
            10.0,
        ),
        (
            _Category(
                "DISHONEST_JUDGMENT_DEBTOR",
                _sev(0, 30, 70),
                _only(
                    _COURT_ENFORCEMENT,
                    "有履行能力而拒不履行生效法律文书确定的义务，执行标的{amount}元",
                    "违反财产报告制度，执行标的{amount}元",
                    "以虚假诉讼、虚假仲裁或者以隐匿、转移财产等方法规避执行",
                ),
            ),
            6.0,
        ),
        (
            _Category(
                "HONOR",
                _sev(0, 1, 0),
                _Weighted(
                    [
                        ((_TAX_HONOR, ("{year}年度纳税信用A级纳税人",)), 4.0),
                        ((_MARKET_HONOR, ("天津市守合同重信用企业",)), 3.0),
                        ((_CREDIT_HONOR, ("诚信经营示范单位", "信用承诺履约优良")), 2.0),
                    ]
                ),
            ),
            6.0,
        ),
        (
            _Category(
                "SOCIAL_INSURANCE_ARREARS",
                _sev(40, 60, 0),
                _only(_HRSS_ARREARS, "欠缴社会保险费{amount}元，经责令限期缴纳逾期仍未缴纳"),
            ),
            5.0,
        ),
        (
            _Category(
                "CREDIT_COMMITMENT_BREACH",
                _sev(30, 70, 0),
                _only(
                    _CREDIT_CENTER,
                    "未履行告知承诺制审批中作出的信用承诺",
                    "信用修复承诺事项未按期履行",
                ),
            ),
            3.0,
        ),
        (
            _Category(
                "SERIOUS_ILLEGAL_DISHONEST",
                _sev(0, 0, 1),
                _only(
                    _MARKET_SERIOUS,
                    "被列入经营异常名录届满3年仍未履行相关义务",
                    "提交虚假材料或者采取其他欺诈手段隐瞒重要事实取得公司登记",
                ),
            ),
            2.0,
        ),
        (
            _Category(
                "MAJOR_TAX_VIOLATION",
                _sev(0, 0, 1),
                _only(
                    _TAX_MAJOR,
                    "虚开增值税专用发票",
                    "逃避缴纳税款{amount}元",
                    "骗取出口退税{amount}元",
                ),
            ),
            2.0,
        ),
        (
            _Category(
                "GAMBLING_SUSPECTED",
                _sev(0, 60, 40),
                _only(_POLICE, "经营场所涉嫌为赌博提供条件", "涉嫌利用网络平台组织赌博活动"),
            ),
            1.0,
        ),
    ]
)

_RECORD_COUNT: Final = _Weighted([(0, 70.0), (1, 18.0), (2, 8.4), (3, 3.6)])


# --- the generator -----------------------------------------------------------------


def _org_body(index: int, offset: int, new_style: bool) -> str:
    """8-character organisation body, unique per index (see the module docstring).

    New-style bodies are "MA" + n in six base-31 digits; as n < 10^8 < 4 * 31^5 the
    first of them is always 0-3, which leaves "MA4".."MAY" free for fixed examples.
    """
    n = (index * _ORG_MULTIPLIER + offset) % _ORG_SPACE
    if not new_style:
        return f"{n:08d}"
    chars = []
    for _ in range(6):
        n, v = divmod(n, 31)
        chars.append(ALPHABET[v])
    return "MA" + "".join(reversed(chars))


def _uscc(prefix: str, division: str, org_body: str) -> str:
    org_check = organisation_code_check_digit(org_body)
    assert org_check is not None, "org_body is built from 0-9 and A-Y only"
    body17 = prefix + division + org_body + org_check
    return body17 + check_character(body17)


def generate(merchants: int, seed: int = DEFAULT_SEED) -> Iterator[dict[str, object]]:
    """Yield ``merchants`` merchant lines, each followed by its record lines.

    Deterministic in ``(merchants, seed)``; a prefix of a larger run is identical
    to a smaller run with the same seed.
    """
    if not 0 <= merchants <= MAX_MERCHANTS:
        raise ValueError(f"merchants must be between 0 and {MAX_MERCHANTS}")
    rng = Random(seed)
    r = rng.random
    randint = rng.randint
    offset = rng.randrange(_ORG_SPACE)
    ref_ord = _REF_ORD
    new_style_from = date(2016, 1, 1).toordinal()
    # Registrations from 1992 to a month before the reference date, skewed to recent.
    reg_span = ref_ord - 30 - date(1992, 1, 1).toordinal()
    fromordinal = date.fromordinal
    counters: dict[str, int] = {}
    given = _GIVEN_NAMES
    n_given = len(given)

    for index in range(merchants):
        kind = _ENTITY_KINDS.pick(r())
        district = (_RURAL_DISTRICTS if kind is _COOPERATIVE else _DISTRICTS).pick(r())
        x = r()
        reg_ord = ref_ord - 30 - int(x * x * reg_span)
        uscc = _uscc(
            kind.prefix, district.code, _org_body(index, offset, reg_ord >= new_style_from)
        )
        representative = _SURNAMES.pick(r()) + given[int(r() * n_given)]
        name = _merchant_name(kind, district, representative, r)
        road = _ROADS[int(r() * len(_ROADS))]
        address = f"天津市{district.name}{road}{randint(1, 999)}号"
        if kind is _COMPANY and r() < 0.3:
            address += f"{_BUILDINGS[int(r() * len(_BUILDINGS))]}{randint(1, 30)}层"
        yield {
            "kind": "merchant",
            "uscc": uscc,
            "name": name,
            "entity_type": kind.entity_type,
            "registration_status": _REGISTRATION_STATUS.pick(r()),
            "registered_on": fromordinal(reg_ord).isoformat(),
            "legal_representative": representative,
            "address": address,
        }
        for _ in range(_RECORD_COUNT.pick(r())):
            yield _record(uscc, district, reg_ord, r, randint, counters, seed)


def _merchant_name(
    kind: _EntityKind,
    district: _District,
    representative: str,
    r: Callable[[], float],
) -> str:
    first = _TRADE_FIRST[int(r() * len(_TRADE_FIRST))]
    j = int(r() * len(_TRADE_SECOND))
    if _TRADE_SECOND[j] == first:  # no "诚诚"
        j = (j + 1) % len(_TRADE_SECOND)
    trade = first + _TRADE_SECOND[j]
    if kind is _COMPANY:
        x = r()
        place = "天津" if x < 0.6 else ("天津市" if x < 0.8 else "天津" + district.short)
        industry = _COMPANY_INDUSTRIES[int(r() * len(_COMPANY_INDUSTRIES))]
        return place + trade + industry + _COMPANY_SUFFIX.pick(r())
    if kind is _INDIVIDUAL:
        shop = _SHOPS[int(r() * len(_SHOPS))]
        if r() < 0.6:
            return f"{district.name}{representative[0]}记{shop}"
        return f"天津市{district.name}{trade}{shop}"
    if kind is _COOPERATIVE:
        produce = _COOP_PRODUCE[int(r() * len(_COOP_PRODUCE))]
        return f"天津市{district.name}{trade}{produce}专业合作社"
    if kind is _SOCIAL:
        return f"天津市{district.name}{trade}{_SOCIAL_NAMES[int(r() * len(_SOCIAL_NAMES))]}"
    return f"天津市{district.name}{_PUBLIC_NAMES[int(r() * len(_PUBLIC_NAMES))]}"


def _record(
    uscc: str,
    district: _District,
    reg_ord: int,
    r: Callable[[], float],
    randint: Callable[[int, int], int],
    counters: dict[str, int],
    seed: int,
) -> dict[str, object]:
    category = _CATEGORIES.pick(r())
    severity = category.severities.pick(r())
    issuer, summaries = category.issuers.pick(r())
    months = 12 if category.code == "HONOR" else _SEVERITY_MONTHS[severity].pick(r())
    # Decided within 1.4 publicity periods before the reference date (never before
    # registration), so about 70% of records are still within their period.
    ago = int(r() * months * 42.6)
    decided = date.fromordinal(max(_REF_ORD - ago, reg_ord + 1))
    until = add_months(decided, months)

    x = r()
    honor = category.code == "HONOR"
    if until < REFERENCE_DATE:
        # Publicity is over; most sources mark it, some lag behind. Only negative
        # records can have been repaired.
        if x < 0.9 or (honor and x < 0.95):
            status = "EXPIRED"
        else:
            status = "REPAIRED" if x < 0.95 else "ACTIVE"
    elif honor:
        status = "ACTIVE" if x < 0.98 else "REVOKED"
    else:
        repairable = add_months(decided, _MIN_MONTHS_BEFORE_REPAIR[severity]) <= REFERENCE_DATE
        if repairable and x < 0.12:
            status = "REPAIRED"
        elif x > 0.95:
            status = "UNDER_OBJECTION"
        elif x > 0.94:
            status = "REVOKED"
        else:
            status = "ACTIVE"

    if issuer.source == "court":
        if r() < 0.7:
            court, court_code = f"天津市{district.name}人民法院", district.court_code
        else:
            court, court_code = _INTERMEDIATE_COURTS[district.intermediate]
    else:
        court = court_code = ""
    year = decided.year
    fields = {
        "year": year,
        "n": randint(1, 9999) if issuer.source == "court" else randint(1, 999),
        "court": court,
        "court_code": court_code,
        "district": district.name,
        "district_short": district.short,
    }
    summary = summaries[int(r() * len(summaries))]
    # Amounts from 500 to about 2 million yuan, mostly small.
    y = 1 + 63 * r()
    amount = int(500 * y * y) // 100 * 100
    source = issuer.source
    number = counters.get(source, 0) + 1
    counters[source] = number
    return {
        "kind": "record",
        "source": source,
        "source_record_id": f"{source}-{seed}-{number:08d}",
        "uscc": uscc,
        "category": category.code,
        "severity": severity,
        "status": status,
        "authority": issuer.authority.format_map(fields),
        "document_no": issuer.document.format_map(fields),
        "decided_on": decided.isoformat(),
        "publicity_until": until.isoformat(),
        "summary": summary.format(amount=amount, year=year - 1),
    }


# --- published examples ------------------------------------------------------------


def _published_examples() -> list[dict[str, object]]:
    """Fixed lines for the codes DOMAIN.md quotes, plus an individual business.

    The two published codes belong to real companies; the names here are invented
    and marked as demo data so that a demo never attributes a record to them.
    """
    ref = REFERENCE_DATE
    # A body "MA6..." lies outside what _org_body can produce (see _org_body).
    individual = _uscc("92", "120103", "MA6T4KX2")
    serious_decided = add_months(ref, -5)
    penalty_decided = add_months(ref, -2)
    return [
        {
            "kind": "merchant",
            "uscc": "91440300708461136T",
            "name": "深圳市示例演示科技有限公司（演示数据）",
            "entity_type": "COMPANY",
            "registration_status": "ACTIVE",
            "registered_on": "2000-02-24",
            "legal_representative": "马示例",
            "address": "广东省深圳市南山区示例路1号（演示地址）",
        },
        {
            "kind": "record",
            "source": "court",
            "source_record_id": "demo-published-0001",
            "uscc": "91440300708461136T",
            "category": "DISHONEST_JUDGMENT_DEBTOR",
            "severity": "SERIOUS",
            "status": "ACTIVE",
            "authority": "天津市第一中级人民法院",
            "document_no": f"({serious_decided.year})津01执1234号",
            "decided_on": serious_decided.isoformat(),
            "publicity_until": add_months(serious_decided, 36).isoformat(),
            "summary": "演示数据：有履行能力而拒不履行生效法律文书确定的义务，执行标的1200000元",
        },
        {
            "kind": "merchant",
            "uscc": "914403001922038216",
            "name": "深圳市示例通信技术有限公司（演示数据）",
            "entity_type": "COMPANY",
            "registration_status": "ACTIVE",
            "registered_on": "1988-09-15",
            "legal_representative": "任示例",
            "address": "广东省深圳市龙岗区示例路2号（演示地址）",
        },
        {
            "kind": "merchant",
            "uscc": individual,
            "name": "河西区张记早点铺（演示数据）",
            "entity_type": "INDIVIDUAL_BUSINESS",
            "registration_status": "ACTIVE",
            "registered_on": "2019-05-20",
            "legal_representative": "张建国",
            "address": "天津市河西区友谊路66号",
        },
        {
            "kind": "record",
            "source": "market_regulation",
            "source_record_id": "demo-published-0002",
            "uscc": individual,
            "category": "ADMINISTRATIVE_PENALTY",
            "severity": "GENERAL",
            "status": "ACTIVE",
            "authority": "天津市河西区市场监督管理局",
            "document_no": f"津河西市监罚〔{penalty_decided.year}〕57号",
            "decided_on": penalty_decided.isoformat(),
            "publicity_until": add_months(penalty_decided, 6).isoformat(),
            "summary": "演示数据：销售不符合食品安全标准的食品，没收违法所得并罚款5000元",
        },
    ]


PUBLISHED_EXAMPLES: Final = _published_examples()
"""Lines for the codes quoted in DOMAIN.md and an edge case, each merchant followed by its
records (``demo seed`` loads them first, then ``generate``'s):

* ``91440300708461136T``: an ACTIVE SERIOUS DISHONEST_JUDGMENT_DEBTOR record, so the
  default policy says RESTRICTED;
* ``914403001922038216``: no records, so CLEAR;
* an individual business (``92``) with an ACTIVE GENERAL ADMINISTRATIVE_PENALTY
  (CAUTION), whose owner's name is personal information.

Every code is valid (GB 32100). :func:`generate` never yields one of them: the two
published ones are not in Tianjin, and the Tianjin one uses an organisation body outside
the generator's range.
"""


def demo_registry(merchants: int, seed: int = DEFAULT_SEED) -> Iterator[dict[str, object]]:
    """``merchants`` merchants in all, each followed by its records: the examples of
    :data:`PUBLISHED_EXAMPLES` first (as many as fit), then :func:`generate`'s."""
    if not 0 <= merchants <= MAX_MERCHANTS:
        raise ValueError(f"merchants must be between 0 and {MAX_MERCHANTS}")
    examples = 0
    for line in PUBLISHED_EXAMPLES:
        if line["kind"] == "merchant":
            if examples == merchants:
                return
            examples += 1
        yield line
    yield from generate(merchants - examples, seed)
