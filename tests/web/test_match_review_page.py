"""The match-review page in a real headless Chromium: side-by-side comparison, decisions, the 409."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from hub.auth.roles import Role
from hub.store.database import Database
from tests.auth.support import principal
from tests.conftest import bearer
from tests.empi.support import ZHANG_WEI_ID, open_reviews, person_of, run_empi, source_patient, store
from tests.web.conftest import save_screenshot, sign_in


def _possible_matches(database: Database) -> None:
    store(database,
          source_patient("org-a", "1", "张丽", gender="female", id_number=ZHANG_WEI_ID[:-1] + "X",
                         phone="13912345678", address="江苏省昆山市玉山镇人民路1号"),
          source_patient("org-b", "2", "张莉", gender="female", phone="13512345678"))
    run_empi(database)


def _sign_in(page: Page, database: Database) -> None:
    sign_in(page, database, "/governance/match-review", "#matches")


def test_a_reviewer_compares_side_by_side_and_links(page: Page, database: Database) -> None:
    _possible_matches(database)
    _sign_in(page, database)
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("[data-testid=name]")).to_have_text("张莉")
    expect(rows.first.locator("[data-testid=status]")).to_have_text("待审核")
    expect(page.locator("#queue")).to_contain_text("待审核 1 条")
    rows.first.click()
    name_row = page.locator("#compare-body tr[data-field=name]")
    expect(name_row.locator("[data-testid=level]")).to_have_text("同音")
    expect(name_row.locator("td").nth(0)).to_have_class("partial")
    birth_row = page.locator("#compare-body tr[data-field=birth_date]")
    expect(birth_row.locator("[data-testid=level]")).to_have_text("完全一致")
    expect(birth_row.locator("td").nth(0)).to_have_class("agree")
    phone_row = page.locator("#compare-body tr[data-field=phone]")
    expect(phone_row.locator("[data-testid=level]")).to_have_text("不一致")
    expect(phone_row.locator("td").nth(0)).to_have_class("disagree")
    expect(phone_row).to_contain_text("135****5678")  # masked, both sides
    expect(phone_row).to_contain_text("139****5678")
    expect(page.locator("#compare-body tr[data-field=id_number]")).to_contain_text("缺失")
    expect(page.locator("#compare-body")).not_to_contain_text("13912345678")
    save_screenshot(page, "match-review")

    page.click("#link")
    expect(page.locator("#message")).to_contain_text("请填写理由")
    page.fill("#reason", "电话回访确认是同一人")
    page.click("#link")
    expect(page.locator("#message")).to_contain_text("已关联")
    expect(rows).to_have_count(0)
    assert person_of(database, "org-b-2") == person_of(database, "org-a-1")
    page.select_option("#f-status", "linked")
    page.click("#search")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("[data-testid=status]")).to_have_text("已关联")


def test_a_stale_page_gets_the_409_explained(page: Page, database: Database, server: str) -> None:
    _possible_matches(database)
    _sign_in(page, database)
    page.locator("#rows tr").first.click()
    [item] = open_reviews(database)
    with httpx.Client(base_url=server, headers=bearer(principal(Role.GOVERNANCE, client_id="other"))) as other:
        assert other.post(f"/governance/matches/{item['id']}/$decide", json={
            "decision": "not-link", "reason": "另一位审核员：姐妹", "version": item["version"]}).status_code == 200
    page.fill("#reason", "我也来决定")
    page.click("#link")
    expect(page.locator("#message")).to_contain_text("该匹配已被他人处理")
    expect(page.locator("#message")).to_have_class("error")
    assert person_of(database, "org-b-2") != person_of(database, "org-a-1")
