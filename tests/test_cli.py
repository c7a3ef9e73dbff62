"""The `rag` command's shared shell: a `RagError` ends any command, nested ones too, the same way."""

from typer.testing import CliRunner

from rag_cli import app


def test_a_rag_error_is_one_red_line_and_exit_status_1(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["trace", "nosuchid", "--data-dir", str(tmp_path)])
    assert res.exit_code == 1 and res.stderr.startswith("error [question_not_found]: "), res.output
    res = runner.invoke(app, ["keys", "revoke", "nosuchkey", "--data-dir", str(tmp_path)])
    assert res.exit_code == 1 and res.stderr == "error [key_not_found]: key 'nosuchkey' does not exist\n", res.output


def test_an_incomplete_answer_is_said_to_be_incomplete():
    from rag_cli.render import incomplete_line

    assert incomplete_line({"complete": True, "incomplete_reason": None}) is None
    assert incomplete_line({"answer": "old ledger rows have no flag"}) is None
    assert "deadline" in incomplete_line({"complete": False, "incomplete_reason": "timeout_s"})
    assert "token limit" in incomplete_line({"complete": False, "incomplete_reason": "max_answer_tokens"})
