"""`GET /api/v1/<entity>/changes?since=<cursor>&limit=<n>`: what changed, for an ERP that syncs by polling.

The log and its order are app/data/change_log.py, the pages app/data/change_feed.py. Who may read it: whoever may
read the entity (`can_read`), and only the changes of records in their row scope.
"""
from __future__ import annotations

from flask import current_app, request
from flask_appbuilder.api import expose, protect, safe
from flask_babel import lazy_gettext as _l

from app.data.change_feed import DEFAULT_LIMIT, MAX_LIMIT, ChangeFeed, CursorExpired, CursorRefused
from app.portal import current_portal
from app.rules.access import current_viewer


class ChangeFeedApiMixin:
    """Mixed into the generated EntityApi (apis.py)."""

    @expose("/changes", methods=["GET"])
    @protect()
    @safe
    def changes(self):
        """Changes of this entity's records, in commit order, after a cursor
        ---
        get:
          description: >-
            Creates, updates and deletes of the records in the caller's row scope, oldest first. Start without
            `since` (from the oldest change kept); then pass the `next` of each answer as `since`. A record is
            shown as it is now, as the list API shows it (hidden fields left out, masked ones masked); a delete has
            `record: null`. Changes are kept PORTAL_CHANGE_LOG_DAYS days (default 30): an older cursor answers 410.
          parameters:
          - {in: query, name: since, schema: {type: string}, description: a `cursor` or `next` of an earlier answer}
          - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
          responses:
            200:
              description: '{"changes": [{"op": "create"|"update"|"delete", "id": 1, "record": {} or null, "cursor": ""}], "next": ""}'
            400: {description: a bad cursor or limit}
            410: {description: the cursor is older than the log's retention}
        """
        since = request.args.get("since") or None
        raw_limit = request.args.get("limit", str(DEFAULT_LIMIT))
        if not (raw_limit.isascii() and raw_limit.isdecimal()) or not 1 <= int(raw_limit) <= MAX_LIMIT:  # not '٣'
            return self.response_400(message=str(_l("limit must be a whole number from 1 to %(max)d.", max=MAX_LIMIT)))
        if since is not None and len(since) > 200:
            return self.response_400(message=str(_l("This cursor is not valid for this feed.")))
        portal = current_portal()
        feed = ChangeFeed(portal.spec, self.entity, portal.models, portal.change_logs[self.entity.name],
                          portal.metadata, current_viewer())
        try:
            page = feed.page(self.datamodel.session, since, int(raw_limit))
        except CursorRefused:
            return self.response_400(message=str(_l("This cursor is not valid for this feed.")))
        except CursorExpired:
            return self.response(410, message=str(_l(
                "This cursor is older than the kept changes: sync again from the full list, then from a new cursor.")))
        finally:
            self.datamodel.session.rollback()  # a read: end the transaction (PostgreSQL: no snapshot held)
        # the records come as JSON text from the database (app/data/change_feed.py): sent as they are
        return current_app.response_class(page.json(), status=200, mimetype="application/json")
