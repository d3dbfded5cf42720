"""An attacker guesses patient card numbers at the app's check-in: card numbers follow a
pattern (network, facility, serial, check digit) and are printed and read aloud, so a bare
number must not check anyone in, a forged QR code must get the same answer as the real
code of an unknown card, and refusals are limited per address and per site."""

from __future__ import annotations

import httpx

from protocol.patient_card import PatientCardNumber
from tests.security.conftest import Clinics

SITE = "clinic-a"


async def _printed_qr(clinics: Clinics, card: str) -> str:
    """The QR code clinic A's reception prints on ``card``."""
    async with clinics.http("10.0.0.5") as desk:
        r = await desk.post(
            f"/api/clinic/sites/{SITE}/card-qr",
            json={"card": card},
            headers=clinics.as_user("clinic-a"),
        )
    assert r.status_code == 200, r.text
    qr: str = r.json()["qr"]
    return qr


def _forged(qr: str, digits: str) -> str:
    """``qr`` with another card number in it (the MAC left as it was)."""
    prefix, site, _digits, mac = qr.rsplit(":", 3)
    return f"{prefix}:{site}:{digits}:{mac}"


async def _check_in(http: httpx.AsyncClient, qr: str) -> httpx.Response:
    return await http.post("/api/clinic/checkin", json={"qr": qr, "site": SITE})


async def test_a_guessed_card_number_checks_nobody_in(clinics: Clinics) -> None:
    hanako = clinics.a.patients[0].card
    async with clinics.http() as attacker:
        bare = await attacker.post("/api/clinic/checkin", json={"card": hanako, "site": SITE})
        assert bare.status_code == 422  # a bare number is not what the app sends any more
        assert "qr" in bare.json()["detail"]

        own_qr = await _printed_qr(
            clinics, PatientCardNumber.issue(1, 9999).digits
        )  # not registered
        forged = await _check_in(attacker, _forged(own_qr, hanako))
        unknown = await _check_in(attacker, own_qr)
    # a registered card with a forged code and a real code of an unknown card: one answer
    assert forged.status_code == unknown.status_code == 404
    assert forged.json() == unknown.json()
    assert forged.json()["detail"].startswith("この診察券ではアプリから受付できません。")
    assert "please see reception" in forged.json()["detail"]

    async with clinics.http("198.51.100.20") as phone:  # Hanako's own phone, her printed code
        mine = await _check_in(phone, await _printed_qr(clinics, hanako))
    assert mine.status_code == 200, mine.text
    assert mine.json()["number"] == "A-001"  # nobody got a ticket in her name before


async def test_refusals_make_one_address_wait_and_then_the_site(clinics: Clinics) -> None:
    qr = await _printed_qr(clinics, clinics.a.patients[3].card)  # Sato Ken's real code
    guesses = [PatientCardNumber.issue(1, 5000 + i).digits for i in range(40)]
    async with clinics.http() as attacker:
        answers = [(await _check_in(attacker, _forged(qr, g))).status_code for g in guesses[:11]]
        assert answers == [404] * 10 + [429]
        waiting = await _check_in(attacker, qr)  # even a real code waits from that address
    assert waiting.status_code == 429
    assert waiting.headers["Retry-After"] == "60"
    detail = waiting.json()["detail"]
    assert detail.startswith(
        "アプリからの受付が続けて失敗しました。1分後にもう一度お試しください。"
    )
    assert "try again in 1 minute" in detail

    async with clinics.http("198.51.100.20") as patient:  # another address is not held up
        ken = await _check_in(patient, qr)
    assert ken.status_code == 200, ken.text

    clinics.clock.advance(60)
    async with clinics.http() as attacker:
        again = await _check_in(attacker, _forged(qr, guesses[11]))
        assert again.status_code == 404  # the wait is over; the next refusal doubles it
        assert (await _check_in(attacker, _forged(qr, guesses[12]))).headers["Retry-After"] == "120"

    # many addresses, a few guesses each: the site's app check-in waits for everyone
    statuses = []
    for n in range(15):
        async with clinics.http(f"192.0.2.{n + 1}") as bot:
            statuses += [(await _check_in(bot, _forged(qr, g))).status_code for g in guesses[:4]]
    assert statuses[-1] == 429
    assert 404 in statuses
    async with clinics.http("198.51.100.21") as someone:
        held = await _check_in(someone, qr)
    assert held.status_code == 429
    assert "窓口" in held.json()["detail"]  # the desk still checks patients in
