"""Protocol constants shared by the client, the handler and the step engine."""

from __future__ import annotations

from typing import Final

VERSION: Final = "0.1.0"
SDK_NAME: Final = "inngest-mw"
SDK_HEADER: Final = f"{SDK_NAME}:v{VERSION}"
LANGUAGE: Final = "py"
REQ_VERSION: Final = "2"
SCHEMA_VERSION: Final = "2024-05-24"
UNSPECIFIED_STEP_ID: Final = "step"
FAILURE_SUFFIX: Final = "-failure"
DEFAULT_SERVE_PATH: Final = "/api/inngest"
CLOUD_API_ORIGIN: Final = "https://api.inngest.com/"
CLOUD_EVENT_ORIGIN: Final = "https://inn.gs/"
DEV_ORIGIN: Final = "http://127.0.0.1:8288/"
DEV_EVENT_KEY: Final = "NO_EVENT_KEY_SET"
MAX_STEP_OUTPUT_BYTES: Final = 4 * 1024 * 1024
MAX_STEPS_PER_RUN: Final = 1000
MAX_EVENT_BYTES: Final = 512 * 1024
MAX_EVENTS_PER_SEND: Final = 5000
# The server sends call bodies of at most 4 MiB (MaxSDKRequestBodySize), using use_api beyond.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
CAPABILITIES: Final = {"in_band_sync": "v1", "trust_probe": "v1"}


class Header:
    """Header names, lower-cased as frameworks hand them over."""

    SDK: Final = "x-inngest-sdk"
    REQ_VERSION: Final = "x-inngest-req-version"
    SIGNATURE: Final = "x-inngest-signature"
    SERVER_KIND: Final = "x-inngest-server-kind"
    EXPECTED_SERVER_KIND: Final = "x-inngest-expected-server-kind"
    SYNC_KIND: Final = "x-inngest-sync-kind"
    NO_RETRY: Final = "x-inngest-no-retry"
    RETRY_AFTER: Final = "retry-after"
    ENV: Final = "x-inngest-env"
    FRAMEWORK: Final = "x-inngest-framework"
    EVENT_ID_SEED: Final = "x-inngest-event-id-seed"
    AUTHORIZATION: Final = "authorization"
    CONTENT_TYPE: Final = "content-type"
    CONTENT_LENGTH: Final = "content-length"
    REQUEST_ID: Final = "x-request-id"
    JOB_ID: Final = "x-inngest-job-id"
    GENERATION_ID: Final = "x-inngest-generation-id"
    SERVER_TIMING: Final = "server-timing"
    MW_TRACE: Final = "x-inngest-mw-trace"
    """Asked for on a call request (``1``), answered with the hook trace (``hooktrace``)."""
