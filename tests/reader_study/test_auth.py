"""Access: tokens stored as salted hashes, roles read from the database, readers reach only their own data."""

from __future__ import annotations

from pathlib import Path

import pytest

from reader_study.auth import (
    MIN_TOKEN_LENGTH,
    SYSTEM,
    TOKEN_ID_LENGTH,
    Actor,
    check_actor,
    enrolled_study,
    hash_token,
    new_token,
    token_holder,
)
from reader_study.errors import AccessDenied
from reader_study.models import Reader
from support import LIKERT_ANSWERS, spec_dict, write_disc_cases
from vce_core.errors import VCEInputError


def test_roles_and_ownership(study, tmp_path: Path) -> None:
    svc, (r1, r2), _ = study
    for call in (
        lambda: svc.create_study(r1, spec_dict(tmp_path, name="x")),
        lambda: svc.open_study(r1, "t-study"),
        lambda: svc.close_study(r1, "t-study"),
        lambda: svc.enroll_reader(r1, "t-study", "Mallory"),
        lambda: svc.create_admin(r1, "Mallory"),
        lambda: svc.answers_frame(r1, "t-study"),
        lambda: svc.progress_all(r1, "t-study"),
        lambda: svc.progress(r1, "t-study", reader_id=r2.reader_id),
        lambda: svc.audit_log(r1),
        # a forged actor: the role is read from the database, and only the SYSTEM object is trusted
        lambda: svc.answers_frame(Actor(r1.reader_id, "admin", "x"), "t-study"),
        lambda: svc.answers_frame(Actor(None, "admin", "system"), "t-study"),
        lambda: svc.next_item(Actor(None, "reader", "nobody"), "t-study"),
    ):
        with pytest.raises(AccessDenied):
            call()
    with pytest.raises(AccessDenied):
        svc.authenticate("not-a-valid-token")
    with pytest.raises(AccessDenied):
        svc.authenticate("")
    # a reader of another study cannot see this study's items
    write_disc_cases(tmp_path / "other", 2)
    svc_other = svc.create_study(
        SYSTEM, {**spec_dict(tmp_path, name="other", readers=1), "cases": {"glob": "other/cases/*"}}
    )
    outsider = svc.authenticate(svc_other["readers"][0]["token"])
    item = svc.next_item(r1, "t-study")
    for call in (
        lambda: svc.next_item(outsider, "t-study"),
        lambda: svc.item_images(outsider, "t-study", item.public_id),
        lambda: svc.item_images(outsider, "other", item.public_id),
        lambda: svc.submit_answers(outsider, "t-study", item.public_id, LIKERT_ANSWERS),
        lambda: svc.study_view(outsider, "t-study"),
    ):
        with pytest.raises(AccessDenied):
            call()
    assert [s["name"] for s in svc.list_studies(outsider)] == ["other"]
    assert set(svc.list_studies(r1)[0]) == {"name"}  # readers see no counts or conditions
    admin_id, admin_token = svc.create_admin(SYSTEM, "Admin")
    admin = svc.authenticate(admin_token)
    assert admin.role == "admin" and len(svc.answers_frame(admin, "t-study")) == 0
    with pytest.raises(AccessDenied):  # admins do not read
        svc.next_item(admin, "t-study")


def test_tokens_are_stored_as_salted_hashes(study) -> None:
    svc, (r1, _), out = study
    token = out["readers"][0]["token"]
    assert len(new_token()) >= 40 and new_token() != new_token()
    with svc.db.read() as s:
        reader = s.get(Reader, r1.reader_id)
        assert reader.token_id == token[:TOKEN_ID_LENGTH]
        assert reader.token_hash == hash_token(token, reader.token_salt)
        assert reader.token_hash != hash_token(token, bytes(16))
        assert token_holder(s, token).id == r1.reader_id
        assert token_holder(s, f"  {token}\n").id == r1.reader_id
        assert token_holder(s, token[:TOKEN_ID_LENGTH] + "x" * 30) is None
        assert token_holder(s, token[: MIN_TOKEN_LENGTH - 1]) is None
    with pytest.raises(VCEInputError, match="display name"):
        svc.create_admin(SYSTEM, " ")
    with pytest.raises(VCEInputError, match=f"at least {MIN_TOKEN_LENGTH} characters"):
        svc.create_admin(SYSTEM, "Admin", token="short")
    with svc.db.write() as s:
        s.get(Reader, r1.reader_id).active = False
    with pytest.raises(AccessDenied, match="not valid"):
        svc.authenticate(token)
    with pytest.raises(AccessDenied, match="not active"):
        svc.next_item(r1, "t-study")
    assert {"login", "login_failed", "access_denied"} <= set(svc.audit_log(SYSTEM)["action"])


def test_access_checks(study) -> None:
    svc, (r1, r2), _ = study
    _, token = svc.create_admin(SYSTEM, "Admin")
    admin = svc.authenticate(token)
    with svc.db.read() as s:
        assert check_actor(s, SYSTEM, admin=True) is None
        assert check_actor(s, admin, admin=True).role == "admin"
        assert check_actor(s, r1).id == r1.reader_id
        with pytest.raises(AccessDenied, match="administrator"):
            check_actor(s, r1, admin=True)
        with pytest.raises(AccessDenied, match="log in"):
            check_actor(s, Actor(None, "admin", "system"))
        reader, st = enrolled_study(s, r2, "t-study")
        assert (reader.id, st.name) == (r2.reader_id, "t-study")
        for actor, name, message in (
            (SYSTEM, "t-study", "reader account"),
            (admin, "t-study", "not enrolled"),
            (r1, "no such study", "not enrolled"),
        ):
            with pytest.raises(AccessDenied, match=message):
                enrolled_study(s, actor, name)
