"""CSRF on every cookie-authenticated change (forms and JSON API), cookie flags, JWT expiry, the production
secret-key rule and the upload size limit."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import jwt
import pytest
from conftest import ADMIN, ROOT, jwt_headers, make_app

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def strict_app(tmp_path_factory):
    return make_app(tmp_path_factory, "strict", WTF_CSRF_ENABLED=True, MAX_CONTENT_LENGTH=LIMIT)


def csrf_token(client, path="/customer/add") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def browser_session(app):
    client = app.test_client()
    token = csrf_token(client, "/login/")
    response = client.post("/login/", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    assert response.status_code == 302
    return client


def test_cookie_session_needs_the_csrf_token_for_api_changes(strict_app):
    api_headers = jwt_headers(strict_app.test_client())
    jwt_client = strict_app.test_client()
    created = jwt_client.post("/api/v1/customer/", json={"name": "CSRF 客户"}, headers=api_headers)
    assert created.status_code == 201  # a JWT client needs no CSRF token
    pk = created.json["id"]
    browser = browser_session(strict_app)
    forged = {"Authorization": "Bearer not-a-token"}  # a header present does not make the cookie safe
    for headers in ({}, forged):
        assert browser.put(f"/api/v1/customer/{pk}", json={"name": "hijacked"}, headers=headers).status_code == 400
        refused = browser.delete(f"/api/v1/customer/{pk}", headers=headers)
        assert refused.status_code == 400 and "CSRF" in refused.json["message"]
        upload = browser.post("/api/v1/customer/import", headers=headers, content_type="multipart/form-data",
                              data={"file": (io.BytesIO("name\nX\n".encode()), "c.csv")})
        assert upload.status_code == 400
    assert jwt_client.get(f"/api/v1/customer/{pk}", headers=api_headers).json["result"]["name"] == "CSRF 客户"
    token = csrf_token(browser)
    changed = browser.put(f"/api/v1/customer/{pk}", json={"name": "renamed"}, headers={"X-CSRFToken": token})
    assert changed.status_code == 200, changed.json
    zh = browser.delete(f"/api/v1/customer/{pk}?_l_=zh")
    assert zh.status_code == 400 and re.search(r"[\u4e00-\u9fff]", zh.json["message"])
    assert browser.delete(f"/api/v1/customer/{pk}", headers={"X-CSRFToken": token}).status_code == 200
    # forms: a post without the token changes nothing
    assert browser.post("/customer/add", data={"name": "no token"}).status_code == 400
    assert jwt_client.get("/api/v1/customer/?q=(filters:!((col:name,opr:eq,value:'no token')))",
                          headers=api_headers).json["count"] == 0


def test_session_cookie_flags_and_jwt_expiry(tmp_path_factory, strict_app):
    cookie = browser_session(strict_app).get_cookie("session")
    assert cookie is not None and cookie.same_site == "Lax" and cookie.http_only and not cookie.secure
    secure_app = make_app(tmp_path_factory, "secure", SESSION_COOKIE_SECURE=True)
    client = secure_app.test_client()
    response = client.post("/login/", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert "Secure" in response.headers["Set-Cookie"] and "SameSite=Lax" in response.headers["Set-Cookie"]
    token = jwt_headers(strict_app.test_client())["Authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == int(strict_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


def test_oversized_uploads_are_refused_with_413_and_change_nothing(strict_app):
    headers = jwt_headers(strict_app.test_client())
    client = strict_app.test_client()
    big = ("name\n" + "\n".join(f"客户{n:07d}" for n in range(LIMIT // 8))).encode()
    assert len(big) > LIMIT
    refused = client.post("/api/v1/customer/import", headers={**headers, "Accept-Language": "zh"},
                          content_type="multipart/form-data", data={"file": (io.BytesIO(big), "big.csv")})
    assert refused.status_code == 413 and re.search(r"[\u4e00-\u9fff]", refused.json["message"])
    browser = browser_session(strict_app)
    page = browser.post("/customer/import", content_type="multipart/form-data",
                        data={"file": (io.BytesIO(big), "big.csv"), "csrf_token": csrf_token(browser, "/customer/import")})
    assert page.status_code == 413 and "0.25 MB" in page.get_data(as_text=True)
    assert client.get("/api/v1/customer/?q=(filters:!((col:name,opr:sw,value:'客户0')))", headers=headers).json["count"] == 0


@pytest.mark.parametrize("how", ["PORTAL_ENV", "gunicorn"])
def test_production_refuses_to_start_without_secret_key(tmp_path, how):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}", PORTAL_SCHEMA_DIR=str(ROOT / "schemas"))
    if how == "PORTAL_ENV":
        command = [sys.executable, "-c", "import run"]
        env["PORTAL_ENV"] = "production"
    else:
        command = [sys.executable, "-m", "gunicorn", "--preload", "-w", "1", "-b", "127.0.0.1:0", "run:app"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
