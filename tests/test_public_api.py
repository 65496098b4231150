import inspect

import reftrack
from reftrack import errors


def test_all_lists_exactly_the_public_api() -> None:
    public = {n for n in dir(reftrack) if not n.startswith("_")} - {
        # submodules are reachable but not part of __all__
        n for n, v in vars(reftrack).items() if inspect.ismodule(v)
    }
    assert set(reftrack.__all__) - {"__version__"} == public
    for name in reftrack.__all__:
        assert hasattr(reftrack, name)


def test_error_hierarchy_and_exit_codes() -> None:
    assert issubclass(errors.UsageError, ValueError)
    assert issubclass(errors.InvalidURIError, ValueError)
    assert issubclass(errors.ObjectNotFound, FileNotFoundError)
    assert issubclass(errors.ObjectNotFound, errors.BackendError)
    assert issubclass(errors.BucketAccessDenied, PermissionError)
    assert issubclass(errors.AccessDenied, PermissionError)
    assert issubclass(errors.DownloadFailed, errors.IntegrityError)
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.ReftrackError)
        assert cls.exit_code in (1, 2, 3, 4, 5)
    assert errors.UsageError.exit_code == 2
    assert errors.IntegrityError.exit_code == 1
    assert errors.BucketNotFound.exit_code == 3
    assert errors.NotFound.exit_code == 4


def test_oserror_subclasses_keep_their_message() -> None:
    exc = errors.ObjectNotFound("s3://b/k: gone", "s3://b/k")
    assert str(exc) == "s3://b/k: gone" and exc.uri == "s3://b/k"


def test_empty_registry_location_is_refused(monkeypatch) -> None:
    import pytest

    from reftrack.errors import UsageError

    with pytest.raises(UsageError, match="registry location is empty"):
        reftrack.Settings(registry="  ")
    monkeypatch.setenv("REFTRACK_REGISTRY", "")
    assert reftrack.Settings.from_env().registry  # empty variable = unset: the default
