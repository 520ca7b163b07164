"""Django settings. Every value comes from the environment through ``env.load_config()``.

A bad environment stops the process here with one line naming each bad variable and exit
code 2 — before Django, Celery or gunicorn print a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

from celery.schedules import crontab  # noqa: F401  (re-exported for readers of CELERY_* below)

from alphasniper_project.env import ConfigError, database_settings, load_config

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    CONFIG = load_config()
except ConfigError as exc:
    sys.stderr.write(f"alphasniper: configuration error: {exc}\n")
    raise SystemExit(2) from None

SECRET_KEY = CONFIG.secret_key
DEBUG = CONFIG.debug
ALLOWED_HOSTS = CONFIG.allowed_hosts

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "django_prometheus",
    "infra",
    "trading",
    "syncer",
    "strategy",
    "adminapi",
    "dashboard",
    "backtest",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "adminapi.errors.AdminJsonErrorsMiddleware",  # every answer under /admin/ is JSON, errors included
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # serves the Django admin's static files under gunicorn
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "infra.logging.TraceIdMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "alphasniper_project.urls"
WSGI_APPLICATION = "alphasniper_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_settings(CONFIG.database_url)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Storage is UTC; schedules and trading days are Hong Kong time (see infra/clock.py).
USE_TZ = True
TIME_ZONE = "UTC"
TRADING_TIME_ZONE = "Asia/Hong_Kong"
LANGUAGE_CODE = "en-us"
USE_I18N = False

STATIC_URL = "/static/"
# Serve static files straight from the installed apps: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "dashboard.staticfiles.PlotlyJsFinder",       # plotly.min.js from the plotly package
]

# The operator dashboard (/dashboard/): Django's own login, staff users only.
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:index"

# --- Venue: only the one named by EXCHANGE is configured -------------------------------
VENUE = CONFIG.venue
MARKET_DATA_SOURCE = CONFIG.market_data_source
MARKET_DATA_SEED = CONFIG.market_data_seed
MARKET_DATA_BASE_URL = CONFIG.market_data_base_url
MARKET_DATA_REPLAY_DIR = CONFIG.replay_dir
PAPER_FEE_RATE = CONFIG.paper_fee_rate
PAPER_SLIPPAGE_BPS = CONFIG.paper_slippage_bps
PAPER_INITIAL_BALANCES = CONFIG.paper_initial_balances

# --- Operator surface ------------------------------------------------------------------
ADMIN_TOKEN = CONFIG.admin_token
TELEGRAM_BOT_TOKEN = CONFIG.telegram_bot_token
TELEGRAM_CHAT_ID = CONFIG.telegram_chat_id
TELEGRAM_API_URL = CONFIG.telegram_api_url

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["adminapi.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["adminapi.auth.IsOperator"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "adminapi.errors.exception_handler",
    # JSON bodies only (no form or multipart), nested at most adminapi.parsers.MAX_JSON_DEPTH deep.
    "DEFAULT_PARSER_CLASSES": ["adminapi.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],  # no HTML "browsable API" pages
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AlphaSniper admin API",
    "DESCRIPTION": "Operator API: halt, resume, emergency exit, config, orders, decisions, audit.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "adminapi.schema.request_bodies_are_closed",
    ],
}

# --- Redis and Celery ------------------------------------------------------------------
REDIS_URL = CONFIG.redis_url
CELERY_BROKER_URL = CONFIG.broker_url
CELERY_RESULT_BACKEND = None          # results live in PostgreSQL as events, not in a backend
CELERY_TIMEZONE = TRADING_TIME_ZONE   # crontabs are Hong Kong wall time
CELERY_ENABLE_UTC = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task that is re-delivered after a worker died must come back quickly; our tasks are
# short, so the visibility timeout only has to outlive the hard time limit.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = True  # for Flower
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BEAT_SCHEDULER = "infra.beat:HeartbeatDatabaseScheduler"
# Celery's Django fixup closes every DB connection around every task unless told to reuse
# them: a fresh PostgreSQL connection costs ~4 ms on the order path (bench: signal-to-wire).
# Reused connections are still retired by CONN_MAX_AGE / CONN_HEALTH_CHECKS (see celery.py).
CELERY_DB_REUSE_MAX = 1_000_000

# --- Observability ---------------------------------------------------------------------
SENTRY_DSN = CONFIG.sentry_dsn
PROMETHEUS_METRIC_NAMESPACE = ""
# Celery's own line per task ("Task x[id] received", "Task x[id] succeeded in 0.01s: None") and
# beat's "Sending due task" for heartbeats, sweeps and snapshots every few seconds were ~70 % of
# an INFO stream; they are quiet unless LOG_LEVEL=DEBUG. Task failures and retries are warnings
# or errors and still show, as does every INFO line of our own code.
_CELERY_ROUTINE_LEVEL = "DEBUG" if CONFIG.log_level == "DEBUG" else "WARNING"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"trace": {"()": "infra.logging.TraceIdFilter"}},
    "formatters": {
        "json": {"()": "infra.logging.JsonFormatter"},
        "text": {"()": "infra.logging.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "filters": ["trace"],
            "formatter": CONFIG.log_format,
        },
    },
    "root": {"handlers": ["console"], "level": CONFIG.log_level},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "ccxt": {"level": "WARNING"},
        "celery.redirected": {"level": "WARNING"},
        "celery.app.trace": {"level": _CELERY_ROUTINE_LEVEL},        # "Task … succeeded in …"
        "celery.worker.strategy": {"level": _CELERY_ROUTINE_LEVEL},  # "Task … received"
        "celery.beat": {"level": _CELERY_ROUTINE_LEVEL},             # "Scheduler: Sending due task …"
    },
}

if CONFIG.sentry_dsn:
    from infra.sentry import init_sentry

    init_sentry(CONFIG.sentry_dsn, environment=CONFIG.run_mode)
