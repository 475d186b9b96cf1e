"""Demo data for the shipped crm, tickets, labour and purchasing modules (skipped for entities that are absent)."""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from flask import Flask
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import func, select

from app.portal import portal_of
from app.rules.history import writing_as
from app.rules.siblings import with_siblings

# customers' addresses, from several provinces (parsed into province, city, district and detail: `type: address`)
ADDRESSES = ["上海市浦东新区张江路100号", "北京市朝阳区建国路88号", "广东省深圳市南山区科技园南区高新南一道9号",
             "浙江省杭州市西湖区文三路90号", "江苏省苏州市昆山市花桥镇商务大道8号", "四川省成都市武侯区人民南路四段1号",
             "重庆市渝中区民权路28号", "湖北省武汉市洪山区珞喻路1037号", "广西壮族自治区南宁市青秀区民族大道136号",
             "山东省青岛市即墨区鹤山路6号", "天津市和平区南京路189号", "福建省厦门市思明区厦禾路20号"]
COMPANIES = ["华建集团", "中铁十局", "万科物业", "绿地地产", "宏达机电", "恒信装饰", "远大建工", "蓝天物业",
             "东方幕墙", "安居物业", "北辰建设", "南方电力安装"]
PEOPLE = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵强", "黄敏", "周杰", "吴刚", "徐丽", "孙浩", "马超", "朱琳", "胡军", "郭勇"]
TRADES = ["general", "carpenter", "mason", "rebar", "electrician", "plumber", "welder"]


# the date a demo record's number is taken on (a ticket opened in March gets a March number)
NUMBERED_ON = {"Ticket": "opened_at", "Contract": "signed_on"}


def _number(app: Flask, made: dict) -> None:
    """Autonumber fields (ticket numbers, customer codes) from the portal's counters, as a create on the record's
    own date would (oldest first)."""
    from app.rules.autonumber import new_numbers

    portal = portal_of(app)
    for name, records in made.items():
        on = NUMBERED_ON.get(name)
        day = (lambda r: getattr(r, on)) if on else (lambda r: dt.date.today())
        by_day: dict[dt.date, list] = {}
        for record in records:
            value = day(record)
            by_day.setdefault(value.date() if isinstance(value, dt.datetime) else value, []).append(record)
        for date in sorted(by_day):
            group = sorted(by_day[date], key=day)
            numbers = new_numbers(app.appbuilder.session, portal.spec.entity(name), portal.models[name], len(group), date)
            for field_name, values in numbers.items():
                for record, value in zip(group, values):
                    setattr(record, field_name, value)


SUPPLIERS = ["宏达五金", "华东建材", "申城电气", "恒通管业"]
GOODS = [("螺纹钢 16毫米", "2650"), ("水泥 42.5级", "420"), ("排水管 110毫米", "38.5"), ("电缆 3×4平方", "12.8"),
         ("膨胀螺栓 M10", "0.85"), ("防水卷材", "65")]


def _purchasing(add, rng, today) -> list:
    """Suppliers and purchase orders with their lines (amounts as the line formula computes them)."""
    suppliers = [add("Supplier", name=name, contact_person=rng.choice(PEOPLE), active=True) for name in SUPPLIERS]
    if not suppliers or suppliers[0] is None:
        return []
    for n in range(8):
        order = add("PurchaseOrder", supplier=rng.choice(suppliers), order_date=today - dt.timedelta(days=rng.randrange(0, 60)),
                    status=rng.choice(["draft", "ordered", "ordered", "received"]))
        for item, price in rng.sample(GOODS, k=rng.randrange(1, 4)):
            qty, unit_price = Decimal(rng.randrange(1, 50)), Decimal(price)
            add("OrderLine", order=order, item=item, qty=qty, unit_price=unit_price,
                amount=(qty * unit_price).quantize(Decimal("0.01")))


def _centres(add, rng, today, projects, suppliers) -> None:
    """Material costs, milestones, receipts and payments of each project over the last months (the centres'
    reports), with the values their formulas would compute."""
    milestones = ["基础施工", "主体结构", "机电安装", "装饰装修", "竣工验收"]
    for project in projects:
        if project is None:
            return
        for _ in range(rng.randrange(15, 30)):
            item, price = rng.choice(GOODS)
            quantity = Decimal(rng.randrange(1, 40))
            add("MaterialCost", project=project, spent_on=today - dt.timedelta(days=rng.randrange(0, 120)), item=item,
                supplier=rng.choice(suppliers) if suppliers else None, quantity=quantity, unit_price=Decimal(price),
                amount=(quantity * Decimal(price)).quantize(Decimal("0.01")))
        start = today - dt.timedelta(days=120)
        for n, name in enumerate(milestones):
            planned_start = start + dt.timedelta(days=30 * n)
            planned_end = planned_start + dt.timedelta(days=35)
            finished = planned_end < today - dt.timedelta(days=10) and rng.random() < 0.8
            actual_end = planned_end + dt.timedelta(days=rng.randrange(-3, 12)) if finished else None
            add("Milestone", project=project, name=name, planned_start=planned_start, planned_end=planned_end,
                actual_start=planned_start + dt.timedelta(days=rng.randrange(0, 5)) if planned_start <= today else None,
                actual_end=actual_end, percent_complete=100 if finished else rng.choice([0, 20, 50, 80]) if planned_start <= today else 0,
                done=finished, delay_days=max((actual_end - planned_end).days, 0) if finished else 0)
        for month in range(4):
            on = today - dt.timedelta(days=30 * month + rng.randrange(0, 20))
            add("Receipt", project=project, received_on=on, amount=Decimal(rng.randrange(20, 120) * 1000),
                reference=f"R{on:%Y%m}-{project.code[-3:]}", method=rng.choice(["transfer", "transfer", "cheque"]))
            for category in ("labour", "material", "subcontract"):
                paid = today - dt.timedelta(days=30 * month + rng.randrange(0, 25))
                add("Payment", project=project, paid_on=paid, amount=Decimal(rng.randrange(5, 60) * 1000),
                    category=category, payee=rng.choice(SUPPLIERS) if category == "material" else rng.choice(PEOPLE),
                    reference=f"P{paid:%Y%m}-{rng.randrange(100, 999)}")


def load_demo(app: Flask, seed: int = 7, labour_days: int = 60) -> str | None:
    """Fill an empty portal with a realistic sample; returns a summary, or None if data already exists."""
    models, spec = portal_of(app).models, portal_of(app).spec
    session = app.appbuilder.session
    if "Customer" not in models or session.scalar(select(func.count()).select_from(models["Customer"])):
        return None
    rng = random.Random(seed)
    admin = session.scalar(select(User).order_by(User.id))
    today = dt.date.today()
    made: dict[str, list] = {}

    def add(entity: str, **values):
        if entity not in models:
            return None
        record = models[entity](**with_siblings(spec.entity(entity), values))  # an address's province, city ...
        session.add(record)
        made.setdefault(entity, []).append(record)
        return record

    for i, name in enumerate(COMPANIES):
        customer = add("Customer", name=name, kind="company", owner=admin, industry=rng.choice(["construction", "real_estate", "property", "manufacturing"]),
                       phone=f"+86138{10000000 + i * 7919:08d}", level=rng.choice(["vip", "normal", "normal", "potential"]),
                       credit_limit=Decimal(rng.randrange(5, 200) * 10000), address=ADDRESSES[i % len(ADDRESSES)],
                       next_follow_up=today + dt.timedelta(days=rng.randrange(-10, 30)),
                       since=today - dt.timedelta(days=rng.randrange(0, 400)))
        contact = add("Contact", customer=customer, name=rng.choice(PEOPLE), position=rng.choice(["项目经理", "采购", "总经理"]),
                      phone=f"+86139{20000000 + i * 3331:08d}", is_primary=True)
        for _ in range(rng.randrange(1, 4)):
            add("FollowUp", customer=customer, contact=contact, method=rng.choice(["phone", "visit", "wechat"]),
                at=dt.datetime.combine(today - dt.timedelta(days=rng.randrange(1, 90)), dt.time(10)),
                summary=rng.choice(["沟通年度维保合同", "现场踏勘", "报价跟进", "续签意向沟通"]),
                next_contact_on=today + dt.timedelta(days=rng.randrange(-5, 20)), done=rng.random() < 0.3)
    customers = made.get("Customer", [])
    for i, customer in enumerate(customers[::2]):
        add("Contract", customer=customer, name=f"{customer.name}{rng.choice(['年度维保合同', '机电安装合同', '物业服务合同'])}",
            amount=Decimal(rng.randrange(10, 300) * 10000), signed_on=today - dt.timedelta(days=rng.randrange(0, 365)),
            owner=admin)
    statuses = ["open", "in_progress", "waiting", "resolved", "closed"]
    for n in range(40):
        opened = dt.datetime.combine(today - dt.timedelta(days=rng.randrange(0, 120)), dt.time(9, rng.randrange(60)))
        status = rng.choice(statuses)
        resolved = opened + dt.timedelta(hours=rng.randrange(2, 96)) if status in ("resolved", "closed") else None
        add("Ticket", assignee=admin, subject=rng.choice(["空调不制冷", "电梯异响", "屋面渗水", "配电箱跳闸", "门禁故障"]),
            customer=rng.choice(customers), priority=rng.choice(["urgent", "high", "normal", "normal", "low"]),
            category=rng.choice(["repair", "installation", "inspection", "complaint"]), status=status,
            opened_at=opened, resolved_at=resolved, resolved_by=admin if resolved else None, due_date=(opened + dt.timedelta(days=3)).date(),
            hours_spent=Decimal(rng.randrange(0, 40)) / 2)
    for ticket in made.get("Ticket", [])[:10]:
        add("TicketNote", ticket=ticket, body=rng.choice(["已电话联系客户", "已派师傅上门", "等待配件到货"]))
    projects = [add("Project", code=f"P2026-{i:03d}", name=name, customer=rng.choice(customers) if customers else None,
                    status="active", start_date=today - dt.timedelta(days=120), budget=Decimal(rng.randrange(50, 500) * 1000))
                for i, name in enumerate(["张江科学城二期", "临港物流园", "虹桥商务楼改造", "松江厂房扩建"], 1)]
    workers = [add("Worker", name=f"{rng.choice(PEOPLE)}{i}", trade=rng.choice(TRADES), team=f"{rng.choice('一二三')}班组",
                   phone=f"+86137{30000000 + i * 4421:08d}", day_rate=Decimal(rng.randrange(250, 550, 10)),
                   projects=rng.sample([p for p in projects if p], k=2), active=True)
               for i in range(1, 21)]
    if "LabourEntry" in models and workers and projects:
        for day in range(labour_days):
            date = today - dt.timedelta(days=day)
            for worker in rng.sample(workers, k=12):
                days = Decimal(rng.choice(["1", "1", "0.5", "1.5"]))
                add("LabourEntry", work_date=date, worker=worker, project=rng.choice(worker.projects), days=days, trade=worker.trade,
                    hours=days * 8, rate=worker.day_rate, amount=(days * worker.day_rate).quantize(Decimal("0.01")),
                    # older entries approved, the last days' submitted, today's still drafts
                    state="approved" if day > 3 else "submitted" if day > 0 else "draft", approved=day > 3,
                    approved_by=admin if day > 3 else None,
                    approved_on=dt.datetime.combine(date + dt.timedelta(days=2), dt.time(18)) if day > 3 else None)
        for worker in workers[-2:]:  # two who have left: on past entries, no longer offered by the worker picker
            worker.active = False
    suppliers = _purchasing(add, rng, today)
    _centres(add, rng, today, projects, suppliers)
    with session.no_autoflush:  # numbered before the first flush: history records each record's creation once
        _number(app, made)
    with writing_as("demo"):
        session.commit()
    rollups = portal_of(app).rollups
    if rollups:  # records made here skip the write path: rollups and the formulas that read them, rebuilt once
        rollups.recompute(session.connection())
        session.commit()
    return ", ".join(f"{len(rows)} {name}" for name, rows in made.items())
