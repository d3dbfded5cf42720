"""The second factor of a login: a TOTP code from an authenticator app (RFC 6238, 30 s,
6 digits), or one of ten one-time recovery codes.

The TOTP secret is kept encrypted (AES-256-GCM under a key derived from the secret key,
bound to the user's id), and no page or API answer shows it after enrolment; recovery
codes are kept as keyed hashes. Changing ``DENEN_CLOUD_SECRET_KEY`` therefore makes every
enrolment unreadable: such a user's login is refused with what to do
(``denen-cloud reset-2fa``), never silently sent to enrol again, which would let whoever
holds the password alone pick the second factor.

A code's time step is accepted once (a code seen over a shoulder cannot be used again),
and wrong codes count in the same :class:`~cloud.core.throttle.LoginThrottle` as wrong
passwords, per account and client address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import RecoveryCode, User
from cloud.core.throttle import LoginThrottle
from cloud.core.views import UserView
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError, UnavailableError
from protocol.clock import Clock

ISSUER = "Denen"
RECOVERY_CODE_COUNT = 10
STEP_S = 30
# a code of the step before or after is accepted too: a phone's clock may be off a little
DRIFT_STEPS = 1
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
_RECOVERY_LEN = 10  # ~49 bits each


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What the enrolment page shows once: the secret as text and as an otpauth:// URI
    (the QR code's content)."""

    secret: str = field(repr=False)
    uri: str = field(repr=False)


def _normalise(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


class SecondFactor:
    """Enrol a user's authenticator, check their codes, hand out recovery codes."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        secret_key: str,
        throttle: LoginThrottle,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._throttle = throttle
        self._aead = AESGCM(hashlib.sha256(b"denen-totp-v1:" + secret_key.encode()).digest())
        self._recovery_key = hashlib.sha256(b"denen-recovery-v1:" + secret_key.encode()).digest()

    # ------------------------------------------------------------------ secrets at rest

    def _seal(self, user_id: int, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), f"user:{user_id}".encode())
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()

    def _open(self, user_id: int, stored: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(stored.removeprefix("v1."))
            return self._aead.decrypt(raw[:12], raw[12:], f"user:{user_id}".encode()).decode()
        except (InvalidTag, ValueError):
            raise UnavailableError(
                "this user's second factor cannot be read (was DENEN_CLOUD_SECRET_KEY "
                "changed?); ops reset it with `denen-cloud reset-2fa USER`, then the user "
                "enrols again at the next login"
            ) from None

    def _recovery_hash(self, code: str) -> str:
        return hmac.new(self._recovery_key, _normalise(code).encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ enrolment

    def enrolled(self, user_id: int) -> bool:
        """Whether the user has a confirmed authenticator."""
        with self._sessions() as session:
            at = session.scalar(select(User.totp_enabled_at).where(User.id == user_id))
        return at is not None

    def start_enrolment(self, user: UserView) -> Enrolment:
        """A fresh secret for ``user``'s authenticator, kept (encrypted) until
        :meth:`confirm_enrolment`; a second call replaces an unconfirmed one."""
        secret = pyotp.random_base32()
        with self._sessions.begin() as session:
            done = session.execute(
                update(User)
                .where(User.id == user.id, User.totp_enabled_at.is_(None))
                .values(totp_secret=self._seal(user.id, secret), totp_last_step=None)
            )
        if not getattr(done, "rowcount", 0):
            raise ConflictError(
                f"{user.username!r} has an authenticator already; to move to a new phone, "
                "log in with a recovery code and ask ops to reset the second factor"
            )
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)
        return Enrolment(secret, uri)

    def confirm_enrolment(self, user: UserView, code: str, address: str) -> list[str]:
        """Enable the authenticator once ``code`` is right; the ten recovery codes (shown
        once). A wrong code raises :class:`InvalidRequestError` and counts as a failure."""
        self._throttle.check(user.username, address)
        with self._sessions() as session:
            row = session.get(User, user.id)
            if row is None or row.totp_secret is None:
                raise NotFoundError("no enrolment was started; open the enrolment page again")
            if row.totp_enabled_at is not None:
                raise ConflictError(f"{user.username!r} has an authenticator already")
            step = self._matching_step(self._open(user.id, row.totp_secret), code, None)
        if step is None:
            self._throttle.failed(user.username, address)
            raise InvalidRequestError(
                "that code is not the one the app shows now; type the 6 digits it shows for "
                "Denen (check the phone's clock is right)"
            )
        self._throttle.succeeded(user.username, address)
        with self._sessions.begin() as session:
            session.execute(
                update(User)
                .where(User.id == user.id)
                .values(totp_enabled_at=int(self._clock.now()), totp_last_step=step)
            )
        return self.new_recovery_codes(user)

    def new_recovery_codes(self, user: UserView) -> list[str]:
        """Ten fresh recovery codes for ``user`` (shown once); the earlier ones stop working."""
        codes = [
            "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LEN))
            for _ in range(RECOVERY_CODE_COUNT)
        ]
        shown = [f"{c[:5]}-{c[5:]}" for c in codes]
        with self._sessions.begin() as session:
            session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
            session.add_all(
                RecoveryCode(user_id=user.id, code_hash=self._recovery_hash(c)) for c in codes
            )
        return shown

    def recovery_codes_left(self, user_id: int) -> int:
        """How many of the user's recovery codes are unused."""
        with self._sessions() as session:
            return len(
                session.scalars(
                    select(RecoveryCode.id).where(
                        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
                    )
                ).all()
            )

    def reset(self, username: str) -> UserView:
        """Forget ``username``'s authenticator and recovery codes (a lost phone): they enrol
        again at their next login."""
        with self._sessions.begin() as session:
            user = session.scalars(select(User).where(User.username == username)).first()
            if user is None:
                raise NotFoundError(f"no user {username!r}; check the name")
            user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
            session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
            return UserView(user.id, user.username, user.role)

    # ------------------------------------------------------------------ login

    def verify(self, user: UserView, code: str, address: str) -> bool:
        """Whether ``code`` is the user's current TOTP code (each time step once) or an
        unused recovery code (then used up). Raises
        :class:`~cloud.errors.TooManyAttemptsError` while the address must wait."""
        self._throttle.check(user.username, address)
        ok = self._totp_ok(user, code) or self._recovery_ok(user, code)
        if ok:
            self._throttle.succeeded(user.username, address)
        else:
            self._throttle.failed(user.username, address)
        return ok

    def _matching_step(self, secret: str, code: str, last_step: int | None) -> int | None:
        code = _normalise(code)
        if len(code) != 6 or not code.isdigit():
            return None
        totp, now = pyotp.TOTP(secret), self._clock.now()
        found = None
        for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):
            at = now + offset * STEP_S
            step = int(at // STEP_S)
            if hmac.compare_digest(totp.at(at), code) and (last_step is None or step > last_step):
                found = step
        return found

    def _totp_ok(self, user: UserView, code: str) -> bool:
        with self._sessions() as session:
            row = session.get(User, user.id)
            if row is None or row.totp_secret is None or row.totp_enabled_at is None:
                return False
            secret, last = self._open(user.id, row.totp_secret), row.totp_last_step
        step = self._matching_step(secret, code, last)
        if step is None:
            return False
        with self._sessions.begin() as session:
            used = session.execute(
                update(User)
                .where(
                    User.id == user.id,
                    (User.totp_last_step.is_(None)) | (User.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
        return bool(getattr(used, "rowcount", 0))

    def _recovery_ok(self, user: UserView, code: str) -> bool:
        with self._sessions.begin() as session:
            used = session.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.user_id == user.id,
                    RecoveryCode.code_hash == self._recovery_hash(code),
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=int(self._clock.now()))
            )
        return bool(getattr(used, "rowcount", 0))
