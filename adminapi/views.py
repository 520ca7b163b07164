"""The /admin API. Views parse, call one service or selector, and shape the answer; no decisions.

Writes: ``trading.services.control`` (halt, resume, config) and ``trading.services.emergency``
(emergency exit), each of which audits in the same transaction. The request's trace id
(``infra.logging.TraceIdMiddleware``) becomes the audit row's ``trace_id``.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from kombu import exceptions as kombu_exceptions
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from adminapi import selectors as cockpit
from adminapi import serializers as s
from adminapi.errors import UniverseNotTradableError, VenueUnavailableError
from backtest import selectors as backtest_selectors
from backtest.models import BacktestRun
from infra.clock import now_utc
from infra.logging import new_trace_id
from strategy import selectors as strategy_selectors
from trading import client_ids, selectors
from trading.config_schema import SCHEMA, ConfigValidationError
from trading.models import Order
from trading.selectors import emergency_exit_report
from trading.services import control
from trading.universe import UniverseNotTradable, VenueUnavailable, universe_check

# How long POST /admin/emergency_exit waits for the report before answering 202: well inside
# gunicorn's worker timeout (30 s).
EMERGENCY_EXIT_WAIT_S = 20

ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="Invalid request; `fields` names every bad field."),
    401: OpenApiResponse(s.ErrorSerializer, description="No Authorization header."),
    403: OpenApiResponse(s.ErrorSerializer, description="Wrong token."),
}
BODY_ERRORS = {
    **ERRORS,
    413: OpenApiResponse(s.ErrorSerializer, description="Body larger than the server takes."),
    415: OpenApiResponse(s.ErrorSerializer, description="Body is not application/json."),
}
SOURCE = "api"


def _trace_id(request) -> str:
    return getattr(request, "trace_id", None) or new_trace_id()


def _validated(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _validated_query(request, serializer_class) -> dict:
    """Query params through a serializer; unknown params are errors too (a typo must not
    silently widen a filter)."""
    params = request.query_params
    serializer = serializer_class(data=params)
    errors: dict = {}
    if not serializer.is_valid():
        errors.update(serializer.errors)
    for name in sorted(set(params) - set(serializer.fields)):
        errors[name] = [f"unknown query parameter; allowed: {', '.join(serializer.fields)}"]
    for name in sorted(set(params) & set(serializer.fields)):
        # DRF reads an empty query value as "not given": `?intent=` would silently list everything.
        if "" in params.getlist(name):
            errors[name] = ["must not be empty; leave the parameter out to not filter by it"]
        elif len(params.getlist(name)) > 1:
            errors[name] = ["given more than once; give it once"]
    if errors:
        raise exceptions.ValidationError(errors)
    return dict(serializer.validated_data)


def _service_errors(exc: Exception) -> exceptions.ValidationError:
    """A service's validation error as a 400 naming each field (config keys under ``changes``)."""
    problems = dict(getattr(exc, "problems", {}) or {"non_field_errors": [str(exc)]})
    changes = {k: problems.pop(k) for k in list(problems) if k in SCHEMA or k not in
               {"by", "source", "reason_code", "reason", "trace_id", "changes", "non_field_errors"}}
    if changes:
        problems["changes"] = changes
    return exceptions.ValidationError(problems)


class OperatorView(APIView):
    """Base of the /admin endpoints: bearer token (settings), JSON errors (adminapi.errors)."""


class HaltView(OperatorView):
    service = staticmethod(control.trading_halt)

    @extend_schema(request=s.OperatorActionSerializer, responses={200: s.HaltResponseSerializer, **BODY_ERRORS},
                   summary="Halt new entries (idempotent; audited)")
    def post(self, request):
        data = _validated(s.OperatorActionSerializer, request.data)
        trace_id = _trace_id(request)
        try:
            state = self.service(actor=data["by"], source=SOURCE, reason_code=data["reason_code"],
                                reason=data["reason"], trace_id=trace_id)
        except control.OperatorInputError as exc:
            raise _service_errors(exc) from None
        return Response({"halted": state.halted, "halt": state.as_json(), "trace_id": trace_id})


class ResumeView(HaltView):
    service = staticmethod(control.trading_resume)

    @extend_schema(request=s.OperatorActionSerializer, responses={200: s.HaltResponseSerializer, **BODY_ERRORS},
                   summary="Resume new entries (idempotent; audited)")
    def post(self, request):
        return super().post(request)


class UpdateConfigView(OperatorView):
    @extend_schema(
        request=s.UpdateConfigSerializer,
        responses={
            200: s.UpdateConfigResponseSerializer, **BODY_ERRORS,
            409: OpenApiResponse(s.ErrorSerializer, description="A new universe the venue does not list or the "
                                 "account cannot fund; `fields.changes.universe` names each symbol."),
            503: OpenApiResponse(s.ErrorSerializer, description="The venue could not be asked about a new universe."),
        },
        summary="Change config keys (all validated first; nothing written on any error; audited)",
    )
    def post(self, request):
        data = _validated(s.UpdateConfigSerializer, request.data)
        if "universe" in data["changes"]:
            try:
                universe_check(data["changes"]["universe"])
            except UniverseNotTradable as exc:
                raise UniverseNotTradableError(exc.problems["universe"]) from None
            except VenueUnavailable as exc:
                raise VenueUnavailableError(str(exc)) from None
        trace_id = _trace_id(request)
        try:
            result = control.config_update(changes=data["changes"], actor=data["by"], source=SOURCE,
                                           reason_code=data["reason_code"], reason=data["reason"], trace_id=trace_id)
        except (control.OperatorInputError, ConfigValidationError) as exc:
            raise _service_errors(exc) from None
        return Response({"changed": result.changed, "unchanged": result.unchanged, "version": result.version,
                         "audit_id": result.audit_id, "values": result.values, "trace_id": trace_id})


class EmergencyExitView(OperatorView):
    """The exit runs as a Celery task on the ``orders`` queue: its venue calls can take far longer
    than a web worker may live, and it must never be killed half way. The call waits up to
    ``EMERGENCY_EXIT_WAIT_S`` for the report; if the exit is still running it answers 202 with
    the URL of the report instead — the operator is never left without one."""

    @extend_schema(
        request=s.EmergencyExitSerializer,
        responses={200: s.EmergencyExitResponseSerializer, 202: s.EmergencyExitRunningSerializer,
                   503: OpenApiResponse(s.ErrorSerializer, description="The task queue is unreachable: use "
                                                                       "`tbot emergency-exit`, which runs in-process."),
                   **BODY_ERRORS},
        summary="Halt, cancel open orders and flatten positions (requires confirm=EMERGENCY_EXIT)",
    )
    def post(self, request):
        data = _validated(s.EmergencyExitSerializer, request.data)
        trace_id = _trace_id(request)
        problems = control.operator_input_problems(actor=data["by"], source=SOURCE, reason_code=data["reason_code"],
                                                   reason=data["reason"], trace_id=trace_id)
        if problems:
            raise _service_errors(control.OperatorInputError(problems))
        from trading.tasks import emergency_exit_run

        try:
            emergency_exit_run.delay(actor=data["by"], source=SOURCE, reason_code=data["reason_code"],
                                     reason=data["reason"], flatten_all=data["flatten_all"], trace_id=trace_id)
        except (OSError, kombu_exceptions.OperationalError) as exc:
            return Response({"error": "task_queue_unavailable",
                             "detail": f"could not start the emergency exit ({exc}); nothing was done. Run "
                                       f"`tbot emergency-exit`, which does not need the queue."}, status=503)
        deadline = time.monotonic() + EMERGENCY_EXIT_WAIT_S
        while (report := emergency_exit_report(trace_id=trace_id)[1]) is None and time.monotonic() < deadline:
            time.sleep(0.25)
        if report is None:
            return Response({"status": "running", "trace_id": trace_id,
                             "report_url": f"/admin/emergency_exit/{trace_id}"}, status=202)
        return Response({**report, "trace_id": trace_id})


class EmergencyExitReportView(OperatorView):
    @extend_schema(responses={200: s.EmergencyExitResponseSerializer, 202: s.EmergencyExitRunningSerializer,
                              404: OpenApiResponse(s.ErrorSerializer, description="No emergency exit with this "
                                                                                  "trace id."),
                              401: ERRORS[401], 403: ERRORS[403]},
                   summary="The report of an emergency exit, by its trace id (202 while it runs)")
    def get(self, request, trace_id: str):
        state, report = emergency_exit_report(trace_id=trace_id)
        if report is not None:
            return Response({**report, "trace_id": trace_id})
        if state == "running":
            return Response({"status": "running", "trace_id": trace_id,
                             "report_url": f"/admin/emergency_exit/{trace_id}"}, status=202)
        raise exceptions.NotFound(f"no emergency exit with trace id {trace_id!r}")


class StatusView(OperatorView):
    @extend_schema(responses={200: s.StatusSerializer, 401: ERRORS[401], 403: ERRORS[403]},
                   summary="Halt state, config version, venue, order counts, heartbeats, last decision, equity, "
                           "today's PnL and open exposure")
    def get(self, request):
        return Response(s.StatusSerializer(cockpit.operator_status()).data)


class ConfigView(OperatorView):
    @extend_schema(responses={200: s.ConfigResponseSerializer, 401: ERRORS[401], 403: ERRORS[403]},
                   summary="Every config key: value, default, type, range, version")
    def get(self, request):
        config = cockpit.config_overview()
        config["halt"] = selectors.is_halted().as_json()
        return Response(s.ConfigResponseSerializer(config).data)


class OrdersView(OperatorView):
    @extend_schema(parameters=[s.OrdersQuerySerializer], responses={200: s.OrderSerializer(many=True), **ERRORS},
                   summary="Orders, newest first")
    def get(self, request):
        query = _validated_query(request, s.OrdersQuerySerializer)
        return Response(s.OrderSerializer(selectors.orders_list(**query), many=True).data)


class OrderEventsView(OperatorView):
    @extend_schema(parameters=[OpenApiParameter("client_order_id", str, OpenApiParameter.PATH,
                                                pattern=client_ids.VALID.pattern,
                                                description="Our client order id (1-36 of A-Z a-z 0-9 _ -)")],
                   responses={200: s.OrderEventsResponseSerializer,
                              404: OpenApiResponse(s.ErrorSerializer, description="Unknown client_order_id."),
                              401: ERRORS[401], 403: ERRORS[403]},
                   summary="One order and its events, oldest first")
    def get(self, request, client_order_id: str):
        if not client_ids.VALID.match(client_order_id):
            # Checked before the query: PostgreSQL refuses a NUL in a string literal (a 500 otherwise).
            raise exceptions.NotFound(f"no order with client_order_id {client_order_id!r}: client order ids are "
                                      "1-36 characters of A-Z, a-z, 0-9, _ and -")
        try:
            order = selectors.order_get(client_order_id=client_order_id)
        except Order.DoesNotExist:
            raise exceptions.NotFound(f"no order with client_order_id {client_order_id!r}") from None
        events = selectors.order_events_list(client_order_id=client_order_id).select_related("order")
        return Response({"order": s.OrderSerializer(order).data,
                         "events": s.OrderEventSerializer(events, many=True).data})


class DecisionsView(OperatorView):
    @extend_schema(parameters=[s.DecisionsQuerySerializer], responses={200: s.DecisionSerializer(many=True), **ERRORS},
                   summary="Strategy decisions, newest first")
    def get(self, request):
        query = _validated_query(request, s.DecisionsQuerySerializer)
        return Response(s.DecisionSerializer(strategy_selectors.decisions_list(**query), many=True).data)


class AuditView(OperatorView):
    @extend_schema(parameters=[s.AuditQuerySerializer], responses={200: s.AuditLogSerializer(many=True), **ERRORS},
                   summary="Audit log, newest first")
    def get(self, request):
        query = _validated_query(request, s.AuditQuerySerializer)
        return Response(s.AuditLogSerializer(selectors.audit_list(**query), many=True).data)



class PositionsView(OperatorView):
    @extend_schema(parameters=[s.PositionsQuerySerializer], responses={200: s.PositionSerializer(many=True), **ERRORS},
                   summary="Positions (open and closed), newest first: PnL, fees, stop and take-profit distance, age")
    def get(self, request):
        query = _validated_query(request, s.PositionsQuerySerializer)
        rows = cockpit.positions_overview(state=query["status"], symbol=query.get("symbol"), limit=query["limit"])
        return Response(s.PositionSerializer(rows, many=True).data)


class PnlView(OperatorView):
    @extend_schema(parameters=[s.PnlQuerySerializer], responses={200: s.PnlSerializer, **ERRORS},
                   summary="PnL today (Hong Kong day), per HK day and in total: realised, unrealised, fees, trades, "
                           "win rate, profit factor, max drawdown")
    def get(self, request):
        query = _validated_query(request, s.PnlQuerySerializer)
        return Response(s.PnlSerializer(cockpit.pnl_overview(days=query["days"])).data)


class EquityView(OperatorView):
    @extend_schema(parameters=[s.EquityQuerySerializer], responses={200: s.EquitySerializer, **ERRORS},
                   summary="The equity curve: snapshots since `since` (default 24 h), oldest first")
    def get(self, request):
        query = _validated_query(request, s.EquityQuerySerializer)
        since = query.get("since") or now_utc() - timedelta(hours=24)
        return Response(s.EquitySerializer(cockpit.equity_points(since=since, max_points=query["max_points"])).data)


BACKTEST_ID = r"^[1-9][0-9]{0,17}$"


class BacktestsView(OperatorView):
    @extend_schema(parameters=[s.BacktestsQuerySerializer],
                   responses={200: s.BacktestSummarySerializer(many=True), **ERRORS},
                   summary="Backtest runs, newest first (next page: ?before=<last id>)")
    def get(self, request):
        query = _validated_query(request, s.BacktestsQuerySerializer)
        runs = backtest_selectors.runs_list(**query)
        return Response(s.BacktestSummarySerializer([backtest_selectors.run_summary(r) for r in runs], many=True).data)


class BacktestDetailView(OperatorView):
    @extend_schema(parameters=[OpenApiParameter("run_id", str, OpenApiParameter.PATH, pattern=BACKTEST_ID,
                                                description="The run's id (a positive integer)"),
                               s.BacktestDetailQuerySerializer],
                   responses={200: s.BacktestDetailSerializer,
                              404: OpenApiResponse(s.ErrorSerializer, description="No backtest run with this id."),
                              **ERRORS},
                   summary="One backtest run: metrics, trades and the equity curve")
    def get(self, request, run_id: str):
        query = _validated_query(request, s.BacktestDetailQuerySerializer)
        if not re.match(BACKTEST_ID, run_id):
            raise exceptions.NotFound(f"no backtest run {run_id!r}: run ids are positive integers")
        try:
            run = backtest_selectors.run_get(run_id=int(run_id))
        except BacktestRun.DoesNotExist:
            raise exceptions.NotFound(f"no backtest run {run_id}") from None
        return Response(s.BacktestDetailSerializer(
            backtest_selectors.run_detail(run, max_points=query["max_points"])).data)
