"""The mapping-review page driven in a real headless Chromium (Debian's, through Playwright)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from hub.store.database import Database
from tests.ingest.conftest import fill_labs, patient_row, register, run
from tests.ingest.sources import insert_rows
from tests.ingest.test_mapping import FRONTDB_TABLE, LOINC, lab, table
from tests.web.conftest import save_screenshot, sign_in

pytestmark = pytest.mark.usefixtures("terminology", "institutions")


@pytest.fixture
def conflicts_ingested(database: Database, frontdb_mariadb: str) -> None:
    table(database, "frontdb", FRONTDB_TABLE.read_text(encoding="utf-8"))
    insert_rows(frontdb_mariadb, "hdr_patient", [patient_row(1)])
    fill_labs(frontdb_mariadb, [lab(1, [("TG", "甘油三酯", "1.9", "mmol/L", None),
                                        ("HGB", "血红蛋白浓度", "150", "g/L", None)]),
                                lab(2, [("TG", "甘油三酯", "2.4", "mmol/L", None)])])
    assert run(database, register(database, "yushan-front", "frontdb", frontdb_mariadb)).status == "succeeded"


def _sign_in(page: Page, database: Database) -> None:
    sign_in(page, database, "/governance/", "#review")


def test_reviewer_signs_in_sees_the_conflicts_and_approves_a_suggestion(
        page: Page, database: Database, conflicts_ingested: None, fhir) -> None:
    _sign_in(page, database)
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(2)
    first = rows.nth(0)  # most frequent first
    expect(first.locator("[data-testid=code]")).to_have_text("TG")
    expect(first.locator("[data-testid=kind]")).to_have_text("未映射")
    expect(first.locator("[data-testid=occurrences]")).to_have_text("2")
    expect(first.locator("[data-testid=status]")).to_have_text("待审核")
    expect(first.locator("[data-testid=institutions]")).to_have_text("测试医院甲（org-ingest-a）")
    expect(rows.nth(1).locator("[data-testid=kind]")).to_have_text("名称变化")

    page.select_option("#f-kind", "display-drift")
    page.click("#search")
    expect(rows).to_have_count(1)
    page.select_option("#f-kind", "")
    page.click("#search")
    expect(rows).to_have_count(2)

    first.click()
    expect(page.locator("#d-title")).to_contain_text("未映射")
    expect(page.locator("#d-samples")).to_contain_text("1.9 mmol/L")
    expect(page.locator("#suggestions [data-testid=s-code]").first).to_have_text("14927-8")
    expect(page.locator("#suggestions [data-testid=s-display]").first).to_have_text("甘油三酯")
    save_screenshot(page, "mapping-review")

    page.locator("[data-testid=approve-suggestion]").first.click()
    expect(page.locator("#message")).to_contain_text("请填写理由")  # a decision needs a reason
    page.fill("#reason", "TG 即甘油三酯")
    page.locator("[data-testid=approve-suggestion]").first.click()
    expect(page.locator("#message")).to_contain_text("已重新标准化 2 条资源")
    expect(page.locator("#d-status")).to_have_text("已批准")
    expect(page.locator("#decisions tr").first).to_contain_text("TG 即甘油三酯")
    expect(rows).to_have_count(1)  # only the open one is left in the list
    assert fhir.get("/Observation", params={"code": f"{LOINC}|14927-8"}).json()["total"] == 2


def test_a_stale_page_gets_the_409_explained(page: Page, database: Database, conflicts_ingested: None,
                                             server: str) -> None:
    _sign_in(page, database)
    page.locator("#rows tr").nth(0).click()
    expect(page.locator("#d-code")).to_have_text("TG")
    # another reviewer decides meanwhile
    import httpx

    from tests.conftest import bearer
    from tests.ingest.test_mapping_review import OTHER_REVIEWER

    with httpx.Client(base_url=server, headers=bearer(OTHER_REVIEWER)) as other:
        conflict = other.get("/governance/conflicts", params={"q": "TG"}).json()["items"][0]
        assert other.post(f"/governance/conflicts/{conflict['id']}/$decide", json={
            "action": "reject", "version": conflict["version"], "reason": "另一位审核员"}).status_code == 200
    page.fill("#reason", "我也来决定")
    page.click("#not-applicable")
    expect(page.locator("#message")).to_contain_text("该冲突已被他人处理")
    expect(page.locator("#message")).to_have_class("error")


def test_manual_target_and_wrong_credentials(page: Page, database: Database, conflicts_ingested: None) -> None:
    page.goto("/governance/")
    page.fill("#client-id", "nobody")
    page.fill("#client-secret", "wrong")
    page.click("#login")
    expect(page.locator("#login-message")).to_contain_text("登录失败")
    expect(page.locator("#review")).to_be_hidden()
    _sign_in(page, database)
    page.locator("#rows tr").nth(1).click()  # the display drift of HGB
    expect(page.locator("#d-detail")).to_contain_text("血红蛋白浓度")
    page.fill("#t-code", "99999-9")
    page.fill("#reason", "手工指定")
    page.click("#approve-manual")
    expect(page.locator("#message")).to_contain_text("99999-9")  # the API's reason, shown in Chinese context
    page.fill("#t-code", "718-7")
    page.click("#approve-manual")
    expect(page.locator("#message")).to_contain_text("已批准")
    expect(page.locator("#d-status")).to_have_text("已批准")


def test_bulk_approval_from_the_page(page: Page, database: Database, conflicts_ingested: None, fhir) -> None:
    _sign_in(page, database)
    expect(page.locator("#rows tr")).to_have_count(2)
    page.click("#bulk")
    expect(page.locator("#message")).to_contain_text("请填写批量批准理由")
    page.fill("#bulk-reason", "高分建议批量确认")
    page.click("#bulk")
    # TG's best suggestion is certain; the renamed HGB has none good enough and stays for a person
    expect(page.locator("#message")).to_contain_text("批量批准 1 条，跳过 1 条")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(page.locator("#rows tr [data-testid=code]")).to_have_text("HGB")
    assert fhir.get("/Observation", params={"code": f"{LOINC}|14927-8"}).json()["total"] == 2
