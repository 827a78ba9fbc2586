"""``transaction_control``: the statements of raw SQL that would end the gateway's transaction."""

from __future__ import annotations

import pytest

from athena.query.raw import transaction_control


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("SELECT 1", None),
        ("select 1; commit", "COMMIT"),
        ("BEGIN; INSERT INTO t VALUES (1); END;", "COMMIT"),  # END is COMMIT
        ("abort", "ROLLBACK"),
        ("ROLLBACK", "ROLLBACK"),
        ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
        ("COMMIT PREPARED 'x'", "COMMIT PREPARED"),
        ("/* a */ CoMmIt -- b", "COMMIT"),
        ("SAVEPOINT a; ROLLBACK TO a; RELEASE a", None),
        ("BEGIN; SELECT 1", None),  # already in a transaction: a warning, nothing ends
        ("DO $$ BEGIN EXECUTE $q$COMMIT$q$; END $$", None),  # the server refuses it in a block
        ("SELECT 'commit', $$end$$, E'rollback' AS \"commit\"", None),
        ("/* nested /* commit */ still a comment */ SELECT 1", None),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", None),
        ("SELECT CASE WHEN true THEN 1 END", None),
    ],
)
def test_statements_that_end_the_transaction(text: str, found: str | None) -> None:
    assert transaction_control(text) == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        # Text the parser cannot read (here: a syntax error) is still split by the scanner.
        ("SELEC 1; commit", "COMMIT"),
        ("SELEC 1; end", "END"),
        ("SELEC 1; rollback to a", None),
        ("SELEC 1; prepare transaction 'x'", "PREPARE TRANSACTION"),
        ("SELEC (1; commit)", None),  # inside parentheses: not a statement of its own
        ("SELEC 'x; commit'", None),
    ],
)
def test_unparsable_text_is_scanned(text: str, found: str | None) -> None:
    assert transaction_control(text) == found
