"""Locust users for bench/load.py: logged-in portal users (admins and a row-scoped foreman), or the anchor.

Started by bench/load.py as `locust -f bench/load_locustfile.py --headless ... AdminUser ForemanUser`
(or `AnchorUser`); what to request comes from the JSON file named by LOAD_TARGETS (ids, projects,
credentials, think time). FastHttpUser keeps locust's own CPU use low: it shares the 2 cores.
Any status other than 2xx/3xx, a connection error, or a redirect to the login page (session lost or
access refused) counts as a failure.
"""
from __future__ import annotations

import json
import os
import random
import re
from urllib.parse import quote, urlencode

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

TARGETS = json.loads(open(os.environ["LOAD_TARGETS"], encoding="utf-8").read())
PAGE_SIZE = 20
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="csrf_token"')
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _check(response) -> None:
    status = response.status_code
    if not status:
        response.failure(f"connection error: {type(getattr(response, 'error', None)).__name__}")
    elif status >= 400:
        response.failure(f"HTTP {status}")
    elif 300 <= status < 400 and "/login" in (response.headers.get("Location") or ""):
        response.failure(f"HTTP {status} to the login page")
    else:
        response.success()


class _Portal(FastHttpUser):
    abstract = True
    wait_time = between(TARGETS["wait_min"], TARGETS["wait_max"])
    network_timeout = TARGETS["request_timeout"]
    connection_timeout = TARGETS["request_timeout"]
    username = ""
    prefix = ""
    token = ""

    def on_start(self) -> None:
        """Form login (with the CSRF token from the login page) for pages, a JWT for the API."""
        with self.client.get("/login/", name=f"{self.prefix}login form", catch_response=True) as response:
            found = CSRF.search(response.text or "") if response.status_code == 200 else None
            _check(response)
        body = {"username": self.username, "password": TARGETS["password"],
                "csrf_token": (found.group(1) or found.group(2)) if found else ""}
        with self.client.post("/login/", name=f"{self.prefix}login post", data=urlencode(body), headers=FORM,
                              allow_redirects=False, catch_response=True) as response:
            if response.status_code == 200:  # the form again: login refused
                response.failure("login refused")
            else:
                _check(response)
        with self.client.post("/api/v1/security/login", name=f"{self.prefix}api login", catch_response=True,
                              json={"username": self.username, "password": TARGETS["password"], "provider": "db"},
                              ) as response:
            if response.status_code == 200:
                self.token = response.json().get("access_token", "")
            _check(response)

    def page(self, path: str, name: str) -> None:
        with self.client.get(path, name=self.prefix + name, allow_redirects=False, catch_response=True) as response:
            _check(response)

    def api(self, path: str, name: str) -> None:
        with self.client.get(path, name=self.prefix + name, headers={"Authorization": f"Bearer {self.token}"},
                             allow_redirects=False, catch_response=True) as response:
            _check(response)


def _rison_contains(column: str, value: str) -> str:
    return quote(f"(filters:!((col:{column},opr:ct,value:'{value}')),page:0,page_size:{PAGE_SIZE})")


class AdminUser(_Portal):
    """An admin browsing everything: 40 of the 50 users."""
    weight = 4
    username = TARGETS["admin"]

    @task(4)
    def labour_list(self):
        self.page("/labour_entry/list/", "labour list page 1")

    @task(2)
    def labour_deep_page(self):
        pages = max(1, TARGETS["entries"] // PAGE_SIZE)
        self.page(f"/labour_entry/list/?page_LabourEntryView={random.randrange(pages // 10, pages)}",
                  "labour list deep page")

    @task(2)
    def labour_by_project(self):
        self.page(f"/labour_entry/list/?_flt_0_project={random.randint(1, TARGETS['projects'])}",
                  "labour list by project")

    @task(2)
    def worker_list(self):
        self.page("/worker/list/", "worker list")

    @task(2)
    def customer_list(self):
        self.page("/customer/list/", "customer list")

    @task(2)
    def customer_search(self):
        self.page(f"/customer/list/?_flt_2_name={quote(random.choice(TARGETS['customer_terms']))}",
                  "customer search")

    @task(2)
    def labour_detail(self):
        self.page(f"/labour_entry/show/{random.randint(1, TARGETS['entries'])}", "labour detail")

    @task(2)
    def customer_detail(self):
        self.page(f"/customer/show/{random.randint(1, TARGETS['customers'])}", "customer detail")

    @task(1)
    def worker_detail(self):
        self.page(f"/worker/show/{random.randint(1, TARGETS['workers'])}", "worker detail")

    @task(2)
    def api_labour_list(self):
        self.api("/api/v1/labour_entry/", "API labour list")

    @task(2)
    def api_labour_get(self):
        self.api(f"/api/v1/labour_entry/{random.randint(1, TARGETS['entries'])}", "API labour get")

    @task(1)
    def api_customer_search(self):
        self.api(f"/api/v1/customer/?q={_rison_contains('name', random.choice(TARGETS['customer_terms']))}",
                 "API customer search")

    @task(1)
    def api_customer_get(self):
        self.api(f"/api/v1/customer/{random.randint(1, TARGETS['customers'])}", "API customer get")

    @task(2)
    def report_page(self):
        self.page(f"/reports/{random.choice(TARGETS['reports'])}", "report page")

    @task(1)
    def report_json(self):
        self.api(f"/api/v1/reports/{random.choice(TARGETS['reports'])}", "API report JSON")


class ForemanUser(_Portal):
    """A site foreman whose row scope is his own projects (~5 % of the entries): 10 of the 50 users."""
    weight = 1
    username = TARGETS["foreman"]
    prefix = "foreman: "

    @task(3)
    def labour_list(self):
        self.page("/labour_entry/list/", "labour list page 1")

    @task(2)
    def labour_by_project(self):
        self.page(f"/labour_entry/list/?_flt_0_project={random.choice(TARGETS['foreman_projects'])}",
                  "labour list by project")

    @task(2)
    def labour_detail(self):
        self.page(f"/labour_entry/show/{random.choice(TARGETS['foreman_entries'])}", "labour detail")

    @task(1)
    def worker_list(self):
        self.page("/worker/list/", "worker list")

    @task(2)
    def api_labour_list(self):
        self.api("/api/v1/labour_entry/", "API labour list")

    @task(1)
    def api_labour_get(self):
        self.api(f"/api/v1/labour_entry/{random.choice(TARGETS['foreman_entries'])}", "API labour get")

    @task(1)
    def report_page(self):
        self.page(f"/reports/{random.choice(TARGETS['foreman_reports'])}", "report page")

    @task(1)
    def report_json(self):
        self.api(f"/api/v1/reports/{random.choice(TARGETS['foreman_reports'])}", "API report JSON")


class AnchorUser(FastHttpUser):
    """The anchor: the same think time, one minimal raw-SQL page of 20 entries."""
    wait_time = between(TARGETS["wait_min"], TARGETS["wait_max"])
    network_timeout = TARGETS["request_timeout"]
    connection_timeout = TARGETS["request_timeout"]

    @task
    def entries(self):
        with self.client.get("/entries", name="anchor: 20 labour entries (raw SQL)", allow_redirects=False,
                             catch_response=True) as response:
            _check(response)
