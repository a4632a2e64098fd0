# ruff: noqa: RUF001  (full-width parentheses are correct in the Japanese strings)
"""The subscriber settings page: plain HTML, a little JavaScript (static/app.js), Japanese and
English. It calls the same REST API with the subscriber's bearer token, which the carrier's
app hands over in the URL fragment (`/settings#token=JWT`: a fragment never reaches a server or
its logs); the page keeps it in sessionStorage only. All message data is inserted as text,
never as HTML, and the Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter(tags=["settings page"])

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Protection settings",
        "intro": "Fraud and spam protection is free and on. Tune it here.",
        "protection": "Fraud protection",
        "strength": "Strength",
        "strength.low": "Low", "strength.standard": "Standard", "strength.high": "High",
        "block_international": "Block SMS from international senders",
        "block_url_unknown_senders": "Block SMS with links from senders not in my contacts",
        "block_spoofed": "Block senders that impersonate a registered brand",
        "youth": "Youth profile (stricter; adult and dating content blocked)",
        "on_block": "When a message is blocked",
        "on_block.quarantine": "Keep it for {days} days so I can get it back",
        "on_block.drop": "Delete it",
        "allow": "Always allow (one number, sender ID, domain or address a line)",
        "block": "Always block (one a line)",
        "save_lists": "Save lists",
        "quarantine": "Blocked messages",
        "empty": "No blocked messages.",
        "why": "Why it was blocked",
        "release": "Get this message",
        "released": "Released",
        "from": "From",
        "saved": "Saved.",
        "error": "Could not save. Please try again.",
        "load_error": "Could not load your settings.",
        "signin": "Open this page from your carrier's app to see your settings.",
        "language": "日本語",
        "other_lang": "ja",
    },
    "ja": {
        "title": "迷惑メッセージ対策の設定",
        "intro": "詐欺・迷惑メッセージ対策は無料で、最初から有効です。ここで調整できます。",
        "protection": "詐欺対策",
        "strength": "ブロックの強さ",
        "strength.low": "弱", "strength.standard": "標準", "strength.high": "強",
        "block_international": "海外からのSMSをブロックする",
        "block_url_unknown_senders": "連絡先にない送信者からのURL付きSMSをブロックする",
        "block_spoofed": "登録ブランドになりすました送信者をブロックする",
        "youth": "青少年向け設定（より厳しく、アダルト・出会い系をブロック）",
        "on_block": "ブロックしたメッセージ",
        "on_block.quarantine": "{days}日間保管して、あとで受け取れるようにする",
        "on_block.drop": "削除する",
        "allow": "常に許可（電話番号・送信者ID・ドメイン・アドレスを1行に1つ）",
        "block": "常にブロック（1行に1つ）",
        "save_lists": "リストを保存",
        "quarantine": "ブロックされたメッセージ",
        "empty": "ブロックされたメッセージはありません。",
        "why": "ブロックした理由",
        "release": "このメッセージを受け取る",
        "released": "受け取り済み",
        "from": "送信者",
        "saved": "保存しました。",
        "error": "保存できませんでした。もう一度お試しください。",
        "load_error": "設定を読み込めませんでした。",
        "signin": "設定を見るには、携帯会社のアプリからこのページを開いてください。",
        "language": "English",
        "other_lang": "en",
    },
}

# Japanese for the reasons a subscriber sees most; others show the check's own (English) text.
REASONS_JA: dict[str, str] = {
    "POLICY_BLOCKLIST": "送信者が「常にブロック」のリストにあります",
    "POLICY_ALLOWLIST": "送信者が「常に許可」のリストにあります",
    "CHECK_FAILED": "検査の一部を実行できませんでした",
    "SMS_INTERNATIONAL": "海外の番号からの送信です",
    "SMS_INTERNATIONAL_BLOCKED": "海外からのSMSをブロックする設定になっています",
    "SMS_SENDER_LOOKALIKE": "登録ブランドの送信者IDに似せた送信者IDです",
    "SMS_SENDER_SPOOFED": "登録ブランドの送信者IDが、登録されていない経路から届きました",
    "SMS_SPOOF_BLOCKED": "なりすまし送信者をブロックする設定になっています",
    "SMS_URL_UNKNOWN_SENDER": "連絡先にない送信者からのURL付きメッセージです",
    "SMS_URL_UNKNOWN_BLOCKED": "連絡先にない送信者からのURL付きSMSをブロックする設定になっています",
    "SMS_FLOOD": "同じ内容のメッセージが短時間に多数の宛先へ送られています",
    "SMS_SENDER_BURST": "この送信者は短時間に多数の宛先へ送信しています",
    "DMARC_PERMERROR": "DMARC: 送信元ドメインのDMARCレコードが不正です",
    "MIME_DEFECTS": "メールの構造が壊れています",
    "MISSING_FROM": "メールに差出人（From）がありません",
    "MULTIPLE_FROM": "メールに差出人（From）が複数あります",
}

TOGGLES = ("protection", "block_international", "block_url_unknown_senders", "block_spoofed",
           "youth")


def pick_language(lang: str | None, accept_language: str | None) -> str:
    if lang in STRINGS:
        return lang
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in STRINGS:
            return code
    return "en"


def render(lang: str, days: float) -> str:
    t = STRINGS[lang]
    e = html.escape
    d = f"{days:g}"
    toggles = "\n".join(
        f'<label class="row"><span>{e(t[name])}</span>'
        f'<input type="checkbox" role="switch" id="f-{name}" data-field="{name}" disabled></label>'
        for name in TOGGLES
    )
    strength = "".join(f'<option value="{v}">{e(t["strength." + v])}</option>'
                       for v in ("low", "standard", "high"))
    on_block = "".join(
        f'<option value="{v}">{e(t["on_block." + v].format(days=d))}</option>'
        for v in ("quarantine", "drop"))
    strings: dict[str, object] = {k: t[k] for k in ("why", "release", "released", "from",
                                                    "saved", "error", "empty", "load_error",
                                                    "signin")}
    strings["reasons"] = REASONS_JA if lang == "ja" else {}
    i18n = e(orjson.dumps(strings).decode())
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(t["title"])}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/settings/static/app.css">
<script src="/settings/static/app.js" defer></script>
</head>
<body data-i18n="{i18n}" data-lang="{lang}">
<header><h1>{e(t["title"])}</h1>
<a class="lang" id="lang-switch" href="/settings?lang={t["other_lang"]}">{e(t["language"])}</a></header>
<p class="intro">{e(t["intro"])}</p>
<p id="status" role="status" aria-live="polite" data-state="loading"></p>
<section id="settings" aria-labelledby="settings-h">
<h2 id="settings-h" class="sr">{e(t["title"])}</h2>
{toggles}
<label class="row"><span>{e(t["strength"])}</span>
<select id="f-strength" data-field="strength" disabled>{strength}</select></label>
<label class="row"><span>{e(t["on_block"])}</span>
<select id="f-on_block" data-field="on_block" disabled>{on_block}</select></label>
<label class="col"><span>{e(t["allow"])}</span><textarea id="f-allow" rows="3" disabled></textarea></label>
<label class="col"><span>{e(t["block"])}</span><textarea id="f-block" rows="3" disabled></textarea></label>
<button type="button" id="save-lists" disabled>{e(t["save_lists"])}</button>
</section>
<section id="quarantine" aria-labelledby="quarantine-h">
<h2 id="quarantine-h">{e(t["quarantine"])}</h2>
<ul id="quarantine-list"></ul>
</section>
</body>
</html>
"""


@router.get("/settings", response_class=HTMLResponse, summary="The subscriber settings page")
async def settings_page(
    request: Request,
    lang: Annotated[Literal["en", "ja"] | None, Query()] = None,
    accept_language: Annotated[str | None, Header(max_length=500)] = None,
) -> HTMLResponse:
    days = request.app.state.gateway.settings.retention.quarantine_days
    return HTMLResponse(render(pick_language(lang, accept_language), days),
                        headers={"Vary": "Accept-Language"})


@router.get("/settings/static/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    media = ASSETS.get(name)
    if media is None:
        raise HTTPException(404, "not found")
    return Response((STATIC / name).read_bytes(), media_type=media,
                    headers={"Cache-Control": "public, max-age=300"})
