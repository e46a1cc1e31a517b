"""Safety rules of audio_url fetching that need no network: schemes, addresses, file:// paths."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from omoai_asr.fetch import FetchPolicy, UrlNotAllowedError, check_address, open_url, resolve_file_url
from omoai_core.errors import InvalidInputError, NotFoundError, PayloadTooLargeError

ALL = frozenset({"http", "https", "s3", "file"})


def policy(**kw) -> FetchPolicy:
    return FetchPolicy(allowed_schemes=kw.pop("schemes", ALL), **kw)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "192.0.2.1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(UrlNotAllowedError) as e:
        check_address(address, policy(), "media.example")
    assert e.value.http_status == 403 and "media.example" in e.value.message


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert str(check_address(address, policy(), "h")) == address


def test_allowed_networks_open_only_their_own_range() -> None:
    p = policy(allowed_networks=(ipaddress.ip_network("10.0.12.0/24"),))
    assert str(check_address("10.0.12.7", p, "minio")) == "10.0.12.7"
    with pytest.raises(UrlNotAllowedError):
        check_address("10.0.13.7", p, "other")


def test_allow_private_addresses_switch_allows_loopback() -> None:
    assert str(check_address("127.0.0.1", policy(allow_private=True), "h")) == "127.0.0.1"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.wav", "gopher://x/", "javascript:alert(1)", "data:audio/wav;base64,AA==", "a.wav"]
)
async def test_unsupported_schemes_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowedError, match="scheme"):
        async with open_url(url, policy()):
            pass


async def test_a_disabled_scheme_is_refused_and_the_allowed_ones_named() -> None:
    with pytest.raises(UrlNotAllowedError, match="allowed: https"):
        async with open_url("http://example.com/a.wav", policy(schemes=frozenset({"https"}))):
            pass


async def test_http_host_resolving_to_a_private_address_is_refused_before_connecting() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.8"]  # one bad address is enough to refuse the host

    with pytest.raises(UrlNotAllowedError, match="10.0.0.8"):
        async with open_url("https://media.example/a.wav", policy(), resolver=resolver):
            pass


async def test_literal_loopback_url_is_refused() -> None:
    with pytest.raises(UrlNotAllowedError, match="loopback"):
        async with open_url("http://127.0.0.1:9/a.wav", policy()):
            pass


async def test_empty_and_overlong_urls_are_invalid_input() -> None:
    for url in ("", "   ", "https://e.com/" + "a" * 9000):
        with pytest.raises(InvalidInputError):
            async with open_url(url, policy()):
                pass


# -- file:// ------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "a.wav").write_bytes(b"RIFF....")
    (tmp_path / "secret.txt").write_text("secret")
    return (tmp_path / "root").resolve()


@pytest.mark.parametrize(
    "url",
    [
        "file://../../etc/passwd",
        "file:///etc/passwd",
        "file://%2e%2e/secret.txt",
        "file:../secret.txt",
        "file://sub/../../secret.txt",
        "file:///sub/a.wav",
    ],
)
def test_file_urls_outside_the_root_are_refused(root: Path, url: str) -> None:
    with pytest.raises(UrlNotAllowedError, match="outside"):
        resolve_file_url(url, policy(file_root=root))


def test_a_symlink_out_of_the_root_is_refused(root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "secret.txt")
    with pytest.raises(UrlNotAllowedError):
        resolve_file_url("file://link.txt", policy(file_root=root))


def test_file_urls_inside_the_root_resolve(root: Path) -> None:
    p = policy(file_root=root)
    target = root / "sub" / "a.wav"
    assert resolve_file_url("file://sub/a.wav", p) == target
    assert resolve_file_url("file:sub/a.wav", p) == target
    assert resolve_file_url(f"file://{root}/sub/a.wav", p) == target
    assert resolve_file_url("file://sub/%61.wav", p) == target


def test_missing_files_directories_and_big_files_are_4xx(root: Path) -> None:
    with pytest.raises(NotFoundError):
        resolve_file_url("file://sub/none.wav", policy(file_root=root))
    with pytest.raises(InvalidInputError, match="not a regular file"):
        resolve_file_url("file://sub", policy(file_root=root))
    with pytest.raises(PayloadTooLargeError):
        resolve_file_url("file://sub/a.wav", policy(file_root=root, max_bytes=4))


def test_file_urls_are_off_without_a_root() -> None:
    with pytest.raises(UrlNotAllowedError, match="OMOAI_FILE_ROOT"):
        resolve_file_url("file://a.wav", policy())
