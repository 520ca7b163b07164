"""The operator dashboard: server-rendered pages for staff users (Django auth).

Views read through ``dashboard.selectors`` and write only through the audited services the
API and tbot use (``trading.services.control``; the emergency exit as the same Celery task as
``POST /admin/emergency_exit``), with source ``dashboard`` and the logged-in user as the actor.
The page refreshes itself by fetching its own fragments and chart data (``dashboard.js``).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_GET, require_http_methods
from kombu import exceptions as kombu_exceptions

from dashboard import charts, selectors
from dashboard.forms import EmergencyExitForm, OperatorActionForm
from infra.logging import new_trace_id
from trading.selectors import emergency_exit_report
from trading.services import control

SOURCE = "dashboard"
REFRESH_S = 5
staff = staff_member_required(login_url=reverse_lazy("dashboard:login"))

# The parts of the page that refresh themselves, and what each needs.
FRAGMENTS = {
    "status": lambda: {"status": selectors.overview()},
    "positions": lambda: {"positions": selectors.open_positions(), "closed": selectors.recent_closed_positions()},
    "whynot": lambda: {"whynot": selectors.why_no_entry(symbols=selectors.universe_and_timeframe()[0])},
    "timeline": lambda: {"timeline": selectors.timeline_today()},
}


def _trace_id(request: HttpRequest) -> str:
    return getattr(request, "trace_id", None) or new_trace_id()


def _charts() -> dict:
    symbols, timeframe = selectors.universe_and_timeframe()
    return {
        "equity": charts.figure_json(charts.equity_figure(selectors.equity_curve())),
        "symbols": {s: charts.figure_json(charts.symbol_figure(selectors.symbol_chart(symbol=s, timeframe=timeframe)))
                    for s in symbols},
    }


@require_GET
@staff
def index(request: HttpRequest) -> HttpResponse:
    symbols, timeframe = selectors.universe_and_timeframe()
    context = {"symbols": symbols, "timeframe": timeframe, "refresh_s": REFRESH_S, "charts": _charts()}
    for build in FRAGMENTS.values():
        context.update(build())
    return render(request, "dashboard/index.html", context)


@require_GET
@staff
def fragment(request: HttpRequest, name: str) -> HttpResponse:
    build = FRAGMENTS.get(name)
    if build is None:
        raise Http404(f"no fragment {name!r}")
    return render(request, f"dashboard/_{name}.html", build())


@require_GET
@staff
def chart_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_charts())


def _halt_or_resume(request: HttpRequest, *, halt: bool) -> HttpResponse:
    service = control.trading_halt if halt else control.trading_resume
    action = "halt" if halt else "resume"
    form = OperatorActionForm(request.POST or None,
                              initial={"reason_code": "MANUAL_HALT" if halt else "MANUAL_RESUME"})
    if request.method == "POST" and form.is_valid():
        try:
            state = service(actor=request.user.get_username(), source=SOURCE, trace_id=_trace_id(request),
                            reason_code=form.cleaned_data["reason_code"], reason=form.cleaned_data["reason"])
        except control.OperatorInputError as exc:
            for field, problems in exc.problems.items():
                form.add_error(field if field in form.fields else None, "; ".join(problems))
        else:
            messages.success(request, f"Trading {'HALTED' if state.halted else 'resumed'} by {state.by} "
                                      f"({state.reason_code}).")
            return redirect("dashboard:index")
    return render(request, "dashboard/confirm_action.html",
                  {"form": form, "action": action, "status": selectors.overview()})


@require_http_methods(["GET", "POST"])
@staff
def halt(request: HttpRequest) -> HttpResponse:
    return _halt_or_resume(request, halt=True)


@require_http_methods(["GET", "POST"])
@staff
def resume(request: HttpRequest) -> HttpResponse:
    return _halt_or_resume(request, halt=False)


@require_http_methods(["GET", "POST"])
@staff
def emergency_exit(request: HttpRequest) -> HttpResponse:
    """Asks first (the operator types EMERGENCY_EXIT), then starts the same task as
    ``POST /admin/emergency_exit`` and shows its report page, which waits for the report."""
    form = EmergencyExitForm(request.POST or None, initial={"reason_code": "EMERGENCY"})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        trace_id = _trace_id(request)
        actor = request.user.get_username()
        problems = control.operator_input_problems(actor=actor, source=SOURCE, reason_code=data["reason_code"],
                                                   reason=data["reason"], trace_id=trace_id)
        for field, items in problems.items():
            form.add_error(field if field in form.fields else None, "; ".join(items))
        if not problems:
            from trading.tasks import emergency_exit_run

            try:
                emergency_exit_run.delay(actor=actor, source=SOURCE, reason_code=data["reason_code"],
                                         reason=data["reason"], flatten_all=data["flatten_all"], trace_id=trace_id)
            except (OSError, kombu_exceptions.OperationalError) as exc:
                form.add_error(None, f"Could not start the emergency exit ({exc}); nothing was done. Run "
                                     f"`tbot emergency-exit`, which does not need the task queue.")
            else:
                return redirect("dashboard:emergency-exit-report", trace_id=trace_id)
    return render(request, "dashboard/emergency_exit.html", {"form": form, "status": selectors.overview(),
                                                             "positions": selectors.open_positions()})


@require_GET
@staff
def emergency_exit_report_view(request: HttpRequest, trace_id: str) -> HttpResponse:
    state, report = emergency_exit_report(trace_id=trace_id)
    if state == "unknown":
        raise Http404(f"no emergency exit with trace id {trace_id!r}")
    return render(request, "dashboard/emergency_report.html",
                  {"trace_id": trace_id, "state": state, "report": report})


# --- backtests -----------------------------------------------------------------------------------

BACKTESTS_PER_PAGE = 50


@require_GET
@staff
def backtests(request: HttpRequest) -> HttpResponse:
    from backtest import selectors as backtest_selectors
    from backtest.models import BacktestSweep

    def number(name: str) -> int | None:
        text = request.GET.get(name)
        return int(text) if text and text.isdigit() and len(text) < 19 else None

    before_id, sweep_id = number("before"), number("sweep")
    sweep = ranking = progress = None
    if sweep_id is not None:
        try:
            sweep = backtest_selectors.sweep_get(sweep_id=sweep_id)
        except BacktestSweep.DoesNotExist:
            raise Http404(f"no sweep {sweep_id}") from None
        ranking = backtest_selectors.sweep_ranking(sweep=sweep)
        progress = backtest_selectors.sweep_progress(sweep=sweep)
    runs = list(backtest_selectors.runs_list(limit=BACKTESTS_PER_PAGE, before=before_id, sweep=sweep_id))
    return render(request, "dashboard/backtests.html", {
        "runs": [backtest_selectors.run_summary(r) for r in runs], "sweep": sweep, "ranking": ranking,
        "progress": progress, "next_before": runs[-1].pk if len(runs) == BACKTESTS_PER_PAGE else None})


@require_GET
@staff
def backtest(request: HttpRequest, run_id: int) -> HttpResponse:
    """One run's report: the figures the HTML report draws (``backtest.report``), from the stored
    curve and trades; the candles are read again from the run's data source."""
    from django.utils.text import slugify

    from backtest import report
    from backtest import selectors as backtest_selectors
    from backtest.data import DataError, DataSource, load_series
    from backtest.models import BacktestRun

    try:
        run = backtest_selectors.run_get(run_id=run_id)
    except BacktestRun.DoesNotExist:
        raise Http404(f"no backtest run {run_id}") from None
    detail = backtest_selectors.run_detail(run)
    source = DataSource.from_json(run.data_source)
    quote = report.quote_asset(run.universe)
    charts = {"equity": report.figure_json(report.equity_figure(run.equity or [], quote=quote)), "symbols": {}}
    candles_problem = None
    if run.status == BacktestRun.Status.DONE:
        start_ms, end_ms = run.spec["start_ms"], run.spec["end_ms"]
        try:
            series = load_series(source, symbols=run.universe, timeframe=run.timeframe, start_ms=start_ms,
                                 end_ms=end_ms, warmup=0)
        except DataError as exc:
            candles_problem = str(exc)
        else:
            charts["symbols"] = {slugify(s): report.figure_json(report.candles_figure(
                series[s], detail["trades"], timeframe=run.timeframe, start_ms=start_ms)) for s in run.universe}
    return render(request, "dashboard/backtest.html", {
        "run": detail, "trades": detail["trades"], "charts": charts, "candles_problem": candles_problem,
        "chart_symbols": run.universe if charts["symbols"] else [], "data_label": source.label(),
        "metric_labels": [(k, label) for k, (label, _) in report.METRIC_LABELS.items()]})
