"""App-owned state: two portals with different schemas in one process, and no listener leaks to other engines."""
from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import create_engine, inspect

from app.portal import portal_of
from conftest import jwt_headers, login, make_app

SHOP = """\
    version: 1
    module: shop
    label: {en: Shop, zh: 商店}
    entities:
      Item:
        label: {en: Item, zh: 商品}
        title: name
        fields:
          name: {type: string, length: 40, required: true, unique: true, label: {en: Name, zh: 名称}}
          price: {type: decimal, precision: 8, scale: 2, label: {en: Price, zh: 价格}}
          shelf: {type: link, to: Shelf, label: {en: Shelf, zh: 货架}}
      Shelf:
        label: {en: Shelf, zh: 货架}
        title: code
        fields:
          code: {type: string, length: 10, required: true, unique: true, label: {en: Code, zh: 编号}}
    """
GARDEN = """\
    version: 1
    module: garden
    label: {en: Garden, zh: 花园}
    entities:
      Item:
        label: {en: Plant, zh: 植物}
        title: name
        fields:
          name: {type: string, length: 40, required: true, label: {en: Name, zh: 名称}}
          colour: {type: enum, choices: {red: {en: Red, zh: 红}, white: {en: White, zh: 白}}, label: {en: Colour, zh: 颜色}}
          planted_by: {type: user, label: {en: Planted by, zh: 种植人}}
    """


def _app(tmp_path_factory, name: str, yaml: str):
    folder = tmp_path_factory.mktemp(f"{name}-schema")
    (folder / f"{name}.yaml").write_text(textwrap.dedent(yaml), encoding="utf-8")
    return make_app(tmp_path_factory, name, schema_dir=folder)


@pytest.fixture(scope="module")
def two_apps(tmp_path_factory):
    return _app(tmp_path_factory, "shop", SHOP), _app(tmp_path_factory, "garden", GARDEN)


def _columns(app, table: str) -> set[str]:
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        return {c["name"] for c in inspect(engine).get_columns(table)}


def test_each_app_has_its_own_models_tables_and_caches(two_apps):
    shop, garden = two_apps
    a, b = portal_of(shop), portal_of(garden)
    assert set(a.models) == {"Item", "Shelf"} and set(b.models) == {"Item"}
    assert a.models["Item"] is not b.models["Item"]
    assert a.metadata is not b.metadata and "shelf" not in b.metadata.tables
    assert a.form_cache is not b.form_cache and a.rule_steps is not b.rule_steps
    assert {"price", "shelf_id"} <= _columns(shop, "item") and "colour" not in _columns(shop, "item")
    assert {"colour", "planted_by_id"} <= _columns(garden, "item") and "price" not in _columns(garden, "item")


def test_interleaved_requests_to_two_portals(two_apps):
    shop, garden = two_apps
    shop_client, garden_client = shop.test_client(), garden.test_client()
    shop_jwt, garden_jwt = jwt_headers(shop_client), jwt_headers(garden_client)
    shop_browser, garden_browser = login(shop.test_client()), login(garden.test_client())

    shelf = shop_client.post("/api/v1/shelf/", json={"code": "S1"}, headers=shop_jwt)
    assert shelf.status_code == 201, shelf.json
    plant = garden_client.post("/api/v1/item/", json={"name": "rose", "colour": "red", "planted_by": 1},
                               headers=garden_jwt)
    assert plant.status_code == 201, plant.json
    item = shop_client.post("/api/v1/item/", json={"name": "rose", "price": "2.50", "shelf": shelf.json["id"]},
                            headers=shop_jwt)
    assert item.status_code == 201, item.json
    # a field of the other portal's Item is unknown here, and the other way round
    wrong = garden_client.post("/api/v1/item/", json={"name": "tulip", "price": "1"}, headers=garden_jwt)
    assert wrong.status_code == 422 and "price" in wrong.json["message"]
    wrong = shop_client.post("/api/v1/item/", json={"name": "tulip", "colour": "red"}, headers=shop_jwt)
    assert wrong.status_code == 422 and "colour" in wrong.json["message"]
    assert garden_client.get("/api/v1/shelf/", headers=garden_jwt).status_code == 404

    assert garden_browser.post("/item/add", data={"name": "lily", "colour": "white"}).status_code == 302
    assert shop_browser.post("/item/add", data={"name": "lily", "price": "3"}).status_code == 302

    shop_items = shop_client.get("/api/v1/item/", headers=shop_jwt).json["result"]
    garden_items = garden_client.get("/api/v1/item/", headers=garden_jwt).json["result"]
    assert sorted((r["name"], r["price"]) for r in shop_items) == [("lily", "3.00"), ("rose", "2.50")]
    assert sorted((r["name"], r["colour"]) for r in garden_items) == [("lily", "white"), ("rose", "red")]
    assert garden_items[0]["planted_by"]["username"] == "admin" or garden_items[1]["planted_by"]["username"] == "admin"

    shop_page = shop_browser.get("/item/list/").get_data(as_text=True)
    garden_page = garden_browser.get("/item/list/").get_data(as_text=True)
    assert "Price" in shop_page and "Colour" not in shop_page
    assert "Colour" in garden_page and "Price" not in garden_page


def test_an_engine_the_portal_did_not_create_gets_none_of_its_listeners(two_apps):
    shop, _ = two_apps
    with shop.app_context():
        portal_engine = shop.appbuilder.session.get_bind()
    outside = create_engine("sqlite://")
    try:
        with outside.connect():
            pass  # connect and check out once: listeners on the Engine or Pool class would run now
        targets = {  # where SQLAlchemy keeps each kind of listener of an engine
            "dialect": (lambda e: e.dialect.dispatch, ("handle_error", "do_connect")),
            "engine": (lambda e: e.dispatch, ("before_cursor_execute", "after_cursor_execute", "engine_connect", "begin")),
            "pool": (lambda e: e.pool.dispatch, ("connect", "first_connect", "checkout", "checkin")),
        }

        def portal_listeners(engine) -> set[str]:
            """Listeners defined in the portal's code (SQLAlchemy adds its own dialect ones to every engine)."""
            found = set()
            for kind, (dispatch, names) in targets.items():
                for name in names:
                    for fn in getattr(dispatch(engine), name):
                        module = getattr(fn, "__module__", "") or ""
                        if module == "app" or module.startswith("app."):
                            found.add(f"{kind}.{name}: {module}.{getattr(fn, '__qualname__', fn)}")
            return found

        mine = portal_listeners(portal_engine)
        # the portal's own engine has them (so the test would see a leak) ...
        assert {entry.split(":")[0] for entry in mine} >= {"dialect.handle_error", "pool.connect", "pool.checkout"}, mine
        # ... an engine created outside it, after it, has none
        assert portal_listeners(outside) == set()
    finally:
        outside.dispose()


def test_the_per_viewer_form_cache_is_bounded(two_apps):
    from app.portal import FORM_CACHE_SIZE, BoundedCache

    assert portal_of(two_apps[0]).form_cache.limit == FORM_CACHE_SIZE
    cache = BoundedCache(3)
    for key in "abc":
        cache.get_or_make(key, lambda key=key: key.upper())
    assert cache.get_or_make("a", lambda: "new") == "A"  # used again: kept
    cache.get_or_make("d", lambda: "D")
    assert list(cache) == ["c", "a", "d"]  # the least recently used ("b") went
