"""The carbon CLI on the shipped data (offline, with --at in 2022)."""

from typer.testing import CliRunner

from flowcache.cli.carbon import carbon_app

runner = CliRunner()


def test_forecast_table_from_the_shipped_files():
    result = runner.invoke(carbon_app, ["forecast", "DE", "--at", "2022-06-01T12:00Z",
                                        "--hours", "3", "--method", "mean7"])
    assert result.exit_code == 0, result.output
    assert "2022-06-01T12:00:00Z" in result.output
    assert "electricitymaps-csv+mean7" in result.output


def test_plan_prints_a_table_and_a_decision_and_plots(tmp_path):
    out = tmp_path / "plan.png"
    result = runner.invoke(carbon_app, [
        "plan", "--duration", "2h", "--max-delay", "8h", "--regions", "eu-north,eu-west",
        "--at", "2022-06-01T06:00Z", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert "eu-north" in result.output
    assert "eu-west" in result.output
    assert "decision:" in result.output
    assert out.stat().st_size > 1000


def test_unknown_zone_is_a_clean_error():
    result = runner.invoke(carbon_app, ["forecast", "XX-NOPE", "--at", "2022-06-01T12:00Z"])
    assert result.exit_code == 1
    assert "no CSV for zone" in result.output
