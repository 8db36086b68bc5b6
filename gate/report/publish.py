"""Where a report goes: a local file (reports/RELEASE.html, or GATE_REPORT_DIR), or S3 when
GATE_REPORT_BUCKET is set, answered with a presigned link (GATE_REPORT_LINK_SECONDS)."""

from __future__ import annotations

from pathlib import Path

from gate.aws import make_client
from gate.errors import ReportError
from gate.release import file_name
from gate.settings import REPORT_LINK_RANGE, current_settings, whole_seconds

DEFAULT_DIR = "reports"  # or GATE_REPORT_DIR


def publish(document: str, release: str, out: str | Path | None = None) -> str:
    """Write the report: to `out`, to S3 when `GATE_REPORT_BUCKET` is set (returns a presigned
    link), else to reports/RELEASE.html. Returns where it is."""
    settings = current_settings()
    bucket = settings.report_bucket
    if out is None and bucket:
        return _upload(document, bucket, f"reports/{file_name(release)}.html")
    folder = Path(settings.report_dir or DEFAULT_DIR)
    path = Path(out) if out is not None else folder / f"{file_name(release)}.html"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document, encoding="utf-8")
    except OSError as e:
        raise ReportError(f"cannot write the report {path}: {e.strerror or e}") from None
    return str(path)


def _upload(document: str, bucket: str, key: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    link_seconds = current_settings().report_link_seconds
    expires = REPORT_LINK_RANGE[1] if link_seconds is None else whole_seconds(
        "GATE_REPORT_LINK_SECONDS", link_seconds, REPORT_LINK_RANGE, "e.g. 86400 for a day", ReportError)
    try:
        s3 = make_client("s3", raw_errors=True)
        s3.put_object(Bucket=bucket, Key=key, Body=document.encode("utf-8"),
                      ContentType="text/html; charset=utf-8")
        return s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)
    except (BotoCoreError, ClientError) as e:
        raise ReportError(f"cannot upload the report to s3://{bucket}/{key}: {e}") from None
