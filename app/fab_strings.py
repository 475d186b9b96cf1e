"""Flask-AppBuilder texts its Chinese catalog lacks; listed here so `make translations` extracts them.

Our translations/zh catalog is loaded after FAB's and completes it.
"""
from flask_babel import lazy_gettext as _l

FAB_STRINGS = (
    _l("List Groups"), _l("Add"), _l("Edit"), _l("Show"), _l("Delete"), _l("OK"), _l("Cancel"), _l("OpenID"),
)
