"""The dashboard page (一屏看全区) in a real headless Chromium: the numbers it renders equal the API's, the ECharts
bars hold the children's figures, a click drills down; a screenshot is saved as a test artifact."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Page, expect

from hub.auth.roles import Role
from hub.store.database import Database
from tests.auth.support import principal
from tests.conftest import bearer
from tests.dashboards.support import (
    CHC,
    LEAD,
    TCM,
    THC,
    ZONE_1,
    blood_pressure,
    follow_up,
    put,
    referral,
    roster,
    visit,
)
from tests.web.conftest import save_screenshot, sign_in


def _dataset(database: Database) -> None:
    roster(database)
    put(database,
        *(visit(f"v-lead-{n}", LEAD, f"2026-0{1 + n % 3}-1{n}T09:00:00+08:00") for n in range(5)),
        *(visit(f"v-chc-{n}", CHC, f"2026-0{1 + n % 3}-0{1 + n}T09:00:00+08:00", "EMER" if n % 4 == 0 else "AMB")
          for n in range(7)),
        *(visit(f"v-tcm-{n}", TCM, f"2026-02-1{n}T09:00:00+08:00") for n in range(3)),
        *(visit(f"v-thc-{n}", THC, f"2026-03-0{1 + n}T09:00:00+08:00") for n in range(4)),
        referral("r1", CHC, LEAD, "2026-01-05", "up", "completed"), referral("r2", THC, TCM, "2026-02-05", "up"),
        referral("r3", LEAD, CHC, "2026-03-05", "down", "completed"),
        follow_up("f1", CHC, "p-1", "2026-02-01T09:00:00+08:00"),
        blood_pressure("b1", "f1", "p-1", "2026-02-01T09:05:00+08:00", 132, 84),
        follow_up("f2", THC, "p-2", "2026-03-01T09:00:00+08:00"),
        blood_pressure("b2", "f2", "p-2", "2026-03-01T09:05:00+08:00", 150, 96, THC))


def shown(figure: dict[str, Any], value: float | None) -> str:
    """A figure as the page formats it."""
    if value is None:
        return "—"
    if figure["scoring"] == "proportion":
        return f"{value * 100:.2f}%"
    if figure["scoring"] == "ratio":
        return f"{value:.2f}"
    if figure["scoring"] == "continuous":
        return f"{value:.1f}" + (f" {figure['unit']}" if figure["unit"] else "")
    text = f"{int(value):,}" if float(value).is_integer() else f"{value:.2f}"
    return f"{text} {figure['unit']}" if figure["unit"] else text


def _api(server: str, unit: str) -> dict[str, Any]:
    with httpx.Client(base_url=server, headers=bearer(principal(Role.GOVERNANCE)), timeout=60) as http:
        response = http.get("/dashboards/indicators", params={"period": "2026-Q1", "unit": unit})
    assert response.status_code == 200, response.text
    return response.json()


def _assert_page_equals_api(page: Page, data: dict[str, Any]) -> None:
    expect(page.locator("#scope")).to_contain_text(data["unit"]["name"])
    expect(page.locator("#scope")).to_contain_text("2026-01-01 至 2026-03-31")
    for indicator in data["indicators"]:
        card = page.locator(f"section.card[data-measure={indicator['measure']}]")
        expect(card.locator("h2")).to_have_text(indicator["title"])
        for figure in indicator["figures"]:
            expect(card.locator(f"table.figures td[data-code={figure['code']}]")).to_have_text(
                shown(figure, figure["value"]))
        lead = next((f for f in indicator["figures"] if f["target"] is not None), None) or next(
            (f for f in indicator["figures"] if f["scoring"] == "proportion"), indicator["figures"][0])
        for child in indicator["children"]:
            expect(card.locator(f"table.children tr[data-unit='{child['id']}'] td[data-code={lead['code']}]")) \
                .to_have_text(shown(lead, child["figures"][lead["code"]]["value"]))
        if indicator["children"]:
            bars = page.evaluate("(id) => echarts.getInstanceByDom(document.getElementById(id)).getOption()"
                                 ".series[0].data", f"chart-{indicator['measure']}")
            expected = [None if c["figures"][lead["code"]]["value"] is None else
                        (round(c["figures"][lead["code"]]["value"] * 100, 2) if lead["scoring"] == "proportion"
                         else c["figures"][lead["code"]]["value"]) for c in indicator["children"]]
            assert bars == expected, indicator["measure"]


def test_the_page_renders_the_api_numbers_and_drills_down(page: Page, database: Database, server: str) -> None:
    _dataset(database)
    sign_in(page, database, "/dashboards", "#filters")
    expect(page.locator("section.card")).to_have_count(7)  # the current year, first
    page.select_option("#f-kind", "quarter")
    page.fill("#f-year", "2026")
    page.select_option("#f-quarter", "1")
    page.select_option("#f-unit", "consortium-ks")
    page.click("#search")
    expect(page.locator("#scope")).to_contain_text("2026-01-01 至 2026-03-31")
    consortium = _api(server, "consortium-ks")
    _assert_page_equals_api(page, consortium)
    share = next(i for i in consortium["indicators"] if i["measure"] == "primary-care-share")
    assert share["figures"][0]["value"] == round(11 / 19, 4)  # 7 at the center + 4 at the township center, of 19
    expect(page.locator("section.card[data-measure=primary-care-share] .badge")).to_have_text("未达标（目标 65.00%）")
    save_screenshot(page, "dashboard")

    # drill down: the zone's row, then the breadcrumb back up
    page.locator(f"section.card[data-measure=primary-care-share] table.children tr[data-unit='{ZONE_1}']").click()
    expect(page.locator("#crumbs b")).to_have_text("市一院片区")
    expect(page.locator("#f-unit")).to_have_value(ZONE_1)
    _assert_page_equals_api(page, _api(server, ZONE_1))
    page.locator("#crumbs a[data-unit=consortium-ks]").click()
    expect(page.locator("#crumbs b")).to_have_text("昆山市紧密型医共体")
    _assert_page_equals_api(page, consortium)


def test_a_member_unit_signs_in_and_sees_only_itself(page: Page, database: Database) -> None:
    from hub.cli.security import register_client

    _dataset(database)
    client, secret = register_client(database, "玉山镇社区卫生服务中心看板", Role.APP, institutions=[CHC])
    page.goto("/dashboards")
    page.fill("#client-id", client.client_id)
    page.fill("#client-secret", secret)
    page.click("#login")
    expect(page.locator("#filters")).to_be_visible()
    options = page.locator("#f-unit option")
    expect(options).to_have_count(2)
    expect(options.nth(1)).to_contain_text("玉山镇社区卫生服务中心")
