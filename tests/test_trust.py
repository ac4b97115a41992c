"""Who a client is (API key or address, proxies, IPv6 /64) and the keys' settings."""
import hashlib
import subprocess
import sys

import pytest
from flask import Flask
from werkzeug.exceptions import Unauthorized

from sentiment_clf.feedback.policy import hash_key, new_key, parse_trusted_keys
from sentiment_clf.web.clients import address_id, client_address, identify

from conftest import ROOT


def test_a_new_key_prints_the_entry_to_configure_and_its_hash_matches():
    done = subprocess.run([sys.executable, "-m", "sentiment_clf.trust", "new-key", "ops-bot"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    key = done.stdout.split("API key (give it to the client; it is not stored anywhere): ")[1].split()[0]
    entry = f"ops-bot:{hashlib.sha256(key.encode()).hexdigest()}"
    assert f"TRUSTED_API_KEYS entry (add it, comma-separated): {entry}" in done.stdout
    assert len(key) >= 40 and parse_trusted_keys(entry) == {hash_key(key): "ops-bot"}
    refused = subprocess.run([sys.executable, "-m", "sentiment_clf.trust", "new-key", "no spaces"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "1 to 64 letters" in refused.stderr


@pytest.mark.parametrize("setting", ["ops", "ops:abc", ":" + "a" * 64, "bad name:" + "a" * 64])
def test_a_malformed_key_setting_is_refused_without_echoing_it(setting):
    with pytest.raises(ValueError, match="entry 1 is not name:sha256hex") as refused:
        parse_trusted_keys(setting)
    assert setting not in str(refused.value)


def test_the_settings_refuse_a_malformed_limit_key_or_proxy(monkeypatch):
    from pydantic import ValidationError

    from sentiment_clf.config import Settings

    for name, value in [("CLIENT_LEARNING_BUDGET", "lots"), ("TRUSTED_API_KEYS", "x"),
                        ("TRUSTED_PROXIES", "10.0.0.300"), ("FEEDBACK_RATE_LIMIT", "20 per fortnight")]:
        with monkeypatch.context() as patch:
            patch.setenv(f"SENTIMENT_CLF_{name}", value)
            with pytest.raises(ValidationError):
                Settings()


def client_of(headers=None, remote="203.0.113.9", keys="", proxies=""):
    app = Flask(__name__)
    app.config.update(TRUSTED_API_KEYS=keys, TRUSTED_PROXIES=proxies)
    with app.test_request_context(headers=headers or {}, environ_base={"REMOTE_ADDR": remote}):
        return identify(), client_address()


def test_an_api_key_names_a_trusted_client_and_an_unknown_one_is_refused():
    key, entry = new_key("ops")
    keys = f"other:{'0' * 64},{entry}"
    assert client_of({"Authorization": f"Bearer {key}"}, keys=keys)[0] == client_of({"X-API-Key": key}, keys=keys)[0]
    client, _ = client_of({"Authorization": f"bearer {key}"}, keys=keys)
    assert (client.id, client.trusted) == ("key:ops", True)
    for headers, trusted in [({"Authorization": "Bearer wrong"}, keys), ({"X-API-Key": ""}, keys),
                             ({"X-API-Key": key}, "")]:
        with pytest.raises(Unauthorized):
            client_of(headers, keys=trusted)
    anonymous, _ = client_of({"Authorization": "Basic dXNlcjpwdw=="}, keys=keys)  # not a key: the address
    assert (anonymous.id, anonymous.trusted) == (address_id("203.0.113.9"), False)


def test_an_address_is_stored_as_an_opaque_id():
    client, address = client_of()
    assert address == "203.0.113.9" and client.id.startswith("ip:") and len(client.id) == 19
    assert "203" not in client.id


def test_x_forwarded_for_counts_only_from_a_trusted_proxy():
    spoofed = {"X-Forwarded-For": "198.51.100.1"}
    assert client_of(spoofed)[1] == "203.0.113.9"  # from anyone else it is ignored
    assert client_of(spoofed, remote="10.0.0.2", proxies="10.0.0.0/8")[1] == "198.51.100.1"
    # The right-most address not a proxy: what a client writes on the left cannot win.
    chain = {"X-Forwarded-For": "1.2.3.4, 198.51.100.1, 10.0.0.7"}
    assert client_of(chain, remote="10.0.0.2", proxies="10.0.0.0/8")[1] == "198.51.100.1"
    assert client_of({"X-Forwarded-For": "garbage"}, remote="10.0.0.2", proxies="10.0.0.0/8")[1] == "10.0.0.2"
    assert client_of({}, remote="10.0.0.2", proxies="10.0.0.0/8")[1] == "10.0.0.2"


@pytest.mark.parametrize(("forwarded", "address"), [
    ("198.51.100.1:41000", "198.51.100.1"), ("1.2.3.4, 198.51.100.1:41000", "198.51.100.1"),
    ("[2001:db8:1:2::7]:41000", "2001:db8:1:2::/64"), ("2001:db8:1:2::7", "2001:db8:1:2::/64"),
    ("198.51.100.1:41000, 10.0.0.7:443", "198.51.100.1"), ("[garbage]:80", "10.0.0.2"),
])
def test_a_forwarded_address_may_carry_a_port(forwarded, address):
    """Proxies that write the client's port too: the address is read, so such clients do
    not all count as the proxy and share its limits."""
    assert client_of({"X-Forwarded-For": forwarded}, remote="10.0.0.2", proxies="10.0.0.0/8")[1] == address


def test_ipv6_clients_are_grouped_by_64():
    one = client_of(remote="2001:db8:1:2::1")
    other = client_of(remote="2001:db8:1:2:ffff:ffff:ffff:ffff")
    elsewhere = client_of(remote="2001:db8:1:3::1")
    assert one[1] == "2001:db8:1:2::/64" and one[0] == other[0] != elsewhere[0]
    assert client_of(remote="::ffff:203.0.113.9")[1] == "203.0.113.9"  # an IPv4 client on an IPv6 socket
