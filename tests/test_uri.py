import pytest

from reftrack.errors import InvalidURIError, UsageError
from reftrack.uri import RefURI, check_entry_path, parse_uri


@pytest.mark.parametrize(
    ("text", "bucket", "key", "version"),
    [
        ("s3://bkt/data/", "bkt", "data/", None),
        ("s3://bkt/data", "bkt", "data", None),
        ("s3://bkt", "bkt", "", None),
        ("s3://bkt/", "bkt", "", None),
        ("s3://bkt/a/b.csv?versionId=abc.123", "bkt", "a/b.csv", "abc.123"),
        ("  s3://bkt/with space.txt  ", "bkt", "with space.txt", None),
        ("s3://bkt/odd%3Fname%23x%25", "bkt", "odd?name#x%", None),
        ("S3://bkt/k", "bkt", "k", None),
    ],
)
def test_parse_s3(text: str, bucket: str, key: str, version: str | None) -> None:
    ref = parse_uri(text)
    assert (ref.scheme, ref.bucket, ref.key, ref.version_id) == ("s3", bucket, key, version)


@pytest.mark.parametrize(
    "key", ["plain", "a/b/c.txt", "we?ird#key%20", "über/ünïcode", "dir/", "a b/c"]
)
def test_format_round_trips(key: str) -> None:
    for version in (None, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "null+/="):
        if version and key.endswith("/"):
            continue
        ref = RefURI("s3", "bkt", key, version)
        assert parse_uri(str(ref)) == ref


def test_version_is_url_text_only_in_uri_module() -> None:
    ref = parse_uri("s3://bkt/k?versionId=v1")
    assert str(ref) == "s3://bkt/k?versionId=v1"
    assert ref.base == "s3://bkt/k"
    assert str(ref.with_version(None)) == "s3://bkt/k"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("ftp://host/file", "unknown scheme"),
        ("s3:///key", "no bucket"),
        ("s3://", "no bucket"),
        ("s3://a/key", "not a valid bucket name"),
        ("s3://bad_bucket!/k", "not a valid bucket name"),
        ("s3://bkt/k?versionId=", "empty"),
        ("s3://bkt/k?version=1", "versionId"),
        ("s3://bkt/k?versionId=1&x=2", "versionId"),
        ("s3://bkt/k#frag", "versionId"),
        ("s3://bkt/prefix/?versionId=1", "prefix"),
        ("gs://bkt/k#notanumber", "generation"),
        ("bucket/key", "no scheme"),
        ("s3://bkt/a\x00b", "control characters"),
    ],
)
def test_bad_uris_are_rejected_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(InvalidURIError, match=fragment):
        parse_uri(text)


def test_invalid_uri_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_uri("ftp://x/y")


def test_credentials_in_uri_are_rejected_and_never_echoed() -> None:
    with pytest.raises(InvalidURIError) as info:
        parse_uri("s3://AKIAEXAMPLE:SuperSecret123@bkt/key")
    message = str(info.value)
    assert "credentials" in message
    assert "SuperSecret123" not in message and "AKIAEXAMPLE" not in message


def test_other_schemes_parse() -> None:
    assert parse_uri("gs://bkt/k#123").version_id == "123"
    assert parse_uri("file:///tmp/x").key == "/tmp/x"
    assert parse_uri("/tmp/x").scheme == "file"
    assert parse_uri("https://example.com/a/b?x=1").key == "a/b?x=1"


@pytest.mark.parametrize("path", ["a", "a/b.txt", "x.y/z", "...", "a..b"])
def test_safe_entry_paths(path: str) -> None:
    assert check_entry_path(path) == path


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../up", "a/../../b", "a//b", "./a", "a/.", "a\\b", "C:x", "a/"]
)
def test_unsafe_entry_paths(path: str) -> None:
    with pytest.raises(UsageError, match="not a safe relative path"):
        check_entry_path(path)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://AKIAEXAMPLE:wJalrXUtn/FEMIK7MDENGbPxRfiCYEXAMPLEKEY@bkt/data/",  # '/' in secret
        "s3://AKIAEXAMPLE@bkt/k",
        "gs://user:pw@bkt/k",
        "https://user:pw@example.com/x",
    ],
)
def test_every_credential_shape_is_refused_and_hidden(uri: str) -> None:
    with pytest.raises(InvalidURIError, match="credentials") as info:
        parse_uri(uri)
    for secret in ("wJalrXUtn", "FEMIK7", "AKIAEXAMPLE", "pw@"):
        assert secret not in str(info.value)


def test_at_sign_in_a_key_is_fine() -> None:
    assert parse_uri("s3://bkt/users/me@example.com/x").key == "users/me@example.com/x"
