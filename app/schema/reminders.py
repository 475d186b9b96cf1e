"""Check the `reminders:` key of a module: date reminders (`date` + `offset`) and event reminders (`on`).

    reminders:
      follow_up_due:
        entity: FollowUp
        date: next_contact_on        # or   on: [create, change:assignee, transition:resolve, delete]
        offset: -1d                  # -1d, 0d, 2h, -30m (fire time = date, midnight for a date field, + offset)
        when: {done: false}          # the filter language (app/schema/filters.py), no $user (a scan has no user)
        notify: [by, customer.owner, role:Manager]
        channels: [inbox, email, webhook:crm]
        message: {en: "Call {customer.name} tomorrow", zh: "明天联系 {customer.name}"}

Read with its module (read_reminders), checked once every entity, workflow and role is known
(check_reminders). Codes E550–E569. Nothing here imports Flask.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass

from app.schema.filters import Filter, check_filter, read_filter
from app.schema.loader import YMap
from app.schema.spec import Label, humanize
from app.schema.values import Check, did_you_mean, kind, short

REMINDER_KEYS = ("entity", "date", "offset", "when", "notify", "channels", "message", "on", "label")
REMINDER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
OFFSET = re.compile(r"^([+-]?)(\d{1,5})([dhm])$")
CHANNELS = ("inbox", "email")
EVENTS = ("create", "update", "delete")


@dataclass(frozen=True)
class ReminderSpec:
    name: str
    entity: str
    file: str
    line: int = 0
    date: str | None = None              # a date reminder: the date/datetime field it counts from
    offset_minutes: int = 0              # fire time = date + offset
    when: Filter = ()
    notify: tuple[str, ...] = ()         # "field", "link.field" (user fields) or "role:Name"
    channels: tuple[str, ...] = ("inbox",)
    message: Label | None = None         # None: a localized default
    on: tuple[str, ...] = ()             # an event reminder: create, update, delete, change:<field>, transition:<name>
    label: Label | None = None           # what users see in their notification settings (default: the name, humanized)

    def title(self, locale: str) -> str:
        return (self.label or Label.plain(humanize(self.name))).get(locale)

    @property
    def is_event(self) -> bool:
        return bool(self.on)

    def fires_on(self, event: str, changed: set[str] | frozenset = frozenset(), transition: str | None = None) -> bool:
        """Whether an event (create/update/delete) with these changed fields and transition triggers it."""
        for trigger in self.on:
            if trigger == event:
                return True
            if event == "update" and trigger.startswith("change:") and trigger[7:] in changed:
                return True
            if transition and trigger == f"transition:{transition}":
                return True
        return False


def offset_minutes(text) -> int | None:
    match = OFFSET.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    sign, amount, unit = match.groups()
    return (-1 if sign == "-" else 1) * int(amount) * {"d": 1440, "h": 60, "m": 1}[unit]


def read_reminders(run: Check, file: str, raw, line: int) -> list[ReminderSpec]:
    """Syntax of each reminder (entity fields, workflows and roles are checked by check_reminders)."""
    if run.mapping(raw, file, line, "reminders") is None:
        return []
    reminders = []
    for name, body in raw.items():
        ln = raw.line_of(name)
        if not isinstance(name, str) or not REMINDER_NAME.match(name):
            run.error(file, ln, "E551", f"reminder name {short(repr(name))} must be lowercase letters, digits and _ (starting with a letter)")
            continue
        what = f"reminder '{name}'"
        if not isinstance(body, YMap):
            run.error(file, ln, "E550", f"{what} must be a mapping with entity, notify and date or on, got {kind(body)}")
            continue
        run.keys(body, REMINDER_KEYS + (True,), file, what, "E550")
        on_key = True if True in body else "on"  # YAML 1.1 reads a bare `on:` key as true
        entity = body.get("entity")
        if not isinstance(entity, str):
            run.error(file, ln, "E553", f"{what} needs 'entity' (the entity it watches)")
            continue
        if ("date" in body) == (on_key in body):
            run.error(file, ln, "E554", f"{what} needs either 'date' (a date reminder) or 'on' (events), not both")
            continue
        offset = 0
        if "offset" in body:
            offset = offset_minutes(body["offset"])
            if offset is None or "date" not in body:
                run.error(file, body.line_of("offset"), "E556",
                          f"offset of {what} must be like -1d, 0d, 2h or -30m, on a date reminder; got {short(body['offset'])}")
                offset = 0
        when = read_filter(run, file, body["when"], body.line_of("when"), f"when of {what}") if "when" in body else ()
        notify = [n for n, _ in run.name_list(body.get("notify"), file, body.line_of("notify"), f"notify of {what}")]
        if not notify:
            run.error(file, body.line_of("notify") if "notify" in body else ln, "E557", f"{what} needs 'notify': user fields or role:Name")
        channels = ("inbox",)
        if "channels" in body:
            channels = tuple(n for n, _ in run.name_list(body["channels"], file, body.line_of("channels"), f"channels of {what}"))
            for channel in channels:
                if channel not in CHANNELS and not (channel.startswith("webhook:") and len(channel) > 8):
                    run.error(file, body.line_of("channels"), "E559",
                              f"unknown channel '{short(channel)}' in {what}; use inbox, email or webhook:<name>")
        message = None
        if "message" in body:
            message, _ = run.label(body["message"], file, body.line_of("message"), f"message of {what}", "")
        on = ()
        if on_key in body:
            on = tuple(n for n, _ in run.name_list(body[on_key], file, body.line_of(on_key), f"on of {what}"))
        date = body.get("date")
        if "date" in body and not isinstance(date, str):
            run.error(file, body.line_of("date"), "E555", f"date of {what} must name a date or datetime field, got {kind(date)}")
            continue
        label, _ = run.label(body.get("label"), file, body.line_of("label"), f"label of {what}", humanize(name))
        reminders.append(ReminderSpec(name, entity, file, ln, date, offset, when, tuple(notify), channels, message, on,
                                      label))
    return reminders


def check_reminders(run: Check, reminders, entities: dict, roles) -> None:
    """Each reminder against its entity's fields, workflow transitions and the portal's roles; names unique."""
    seen: dict[str, ReminderSpec] = {}
    role_names = {r.name for r in roles} | {"Admin"}
    for r in reminders:
        what = f"reminder '{r.name}'"
        if r.name in seen:
            run.error(r.file, r.line, "E552", f"{what} is already defined in {seen[r.name].file}")
        seen[r.name] = r
        entity = entities.get(r.entity)
        if entity is None:
            run.error(r.file, r.line, "E553", f"{what} names unknown entity '{short(r.entity)}'{did_you_mean(r.entity, entities)}")
            continue
        fields = {f.name: f for f in entity.fields}
        if r.date is not None:
            f = fields.get(r.date)
            if f is None or f.type not in ("date", "datetime"):
                run.error(r.file, r.line, "E555", f"date of {what} must name a date or datetime field of '{entity.name}', got '{short(r.date)}'")
        for trigger in r.on:
            kind_, _, arg = trigger.partition(":")
            if trigger in EVENTS:
                continue
            if kind_ == "change" and arg in fields:
                continue
            if kind_ == "transition" and entity.workflow is not None and entity.workflow.transition(arg):
                continue
            run.error(r.file, r.line, "E560", f"unknown event '{short(trigger)}' in {what}: use create, update, delete, "
                                              f"change:<field of {entity.name}> or transition:<a transition of its workflow>")
        for target in r.notify:
            if target.startswith("role:"):
                if target[5:] not in role_names:
                    run.error(r.file, r.line, "E558", f"{what} notifies unknown role '{short(target[5:])}'{did_you_mean(target[5:], role_names)}")
                continue
            if _user_field(entities, entity, target) is None:
                run.error(r.file, r.line, "E557", f"{what} notifies '{short(target)}', which is not a user field of "
                                                  f"'{entity.name}' (or link.user_field); use a user field or role:Name")
        if r.when:
            check_filter(run, r.file, r.line, f"when of {what}", entities, entity.name, r.when, user=False)
        if r.message is not None:
            for _locale, text in r.message.texts:
                for name in placeholders(text):
                    if name is None or _field_path(entities, entity, name) is None:
                        run.error(r.file, r.line, "E561", f"message of {what} has placeholder '{{{name or ''}}}', "
                                                          f"which is not a field of '{entity.name}' (or link.field)")


def check_webhook_channels(run: Check, reminders, webhook_names) -> None:
    """Once the `webhooks:` key exists: each `webhook:<name>` channel names one of them."""
    for r in reminders:
        for channel in r.channels:
            if channel.startswith("webhook:") and channel[8:] not in webhook_names:
                run.error(r.file, r.line, "E559", f"reminder '{r.name}' sends to unknown webhook '{short(channel[8:])}'")


def placeholders(text: str) -> list[str | None]:
    """The `{field}` / `{link.field}` names of a message (None for an empty or malformed one)."""
    try:
        return [name if name else None for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError:
        return [None]


def _field_path(entities, entity, path: str):
    parts = path.split(".")
    if len(parts) > 2:
        return None
    fields = {f.name: f for f in entity.fields}
    f = fields.get(parts[0])
    if f is None or len(parts) == 1:
        return f
    if not f.stores_link or f.kind.to_users or f.to not in entities:
        return None
    return next((g for g in entities[f.to].fields if g.name == parts[1]), None)


def _user_field(entities, entity, path: str):
    f = _field_path(entities, entity, path)
    return f if f is not None and f.kind.to_users and not f.kind.multiple else None
