"""The pipeline's command line: what a CI job runs.

    python -m tools.pipeline preview [--stack S ...] [--changed-since REF]
    python -m tools.pipeline deploy ENV
    python -m tools.pipeline promote FROM TO [--dry-run] [--drill-max-age HOURS]
    python -m tools.pipeline drift ENV

Each prints a Markdown report on stdout (and into `--markdown FILE`, e.g. a pull request
comment or $GITHUB_STEP_SUMMARY); the engine's progress goes to stderr. Exit status:
0 green; 1 the gate is closed (a mandatory policy violation, a failed engine run, drift, a
refused promotion); 2 the request itself is wrong (unknown stack, unreadable stack file, bad
option), with one message naming what.

The state backend and secrets come from the environment as for any Pulumi command
(PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE, PULUMI_HOME; KUBECONFIG for the clusters).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from tools.pipeline import drift as drift_report
from tools.pipeline import drills, engine, promotion, report, selection
from tools.pipeline.changes import Outcome

OK, GATE_CLOSED, BAD_REQUEST = 0, 1, 2


class BadRequest(Exception):
    """The command cannot be carried out as asked; the message says why."""


def _check_stack(name: str, work_dir: Path) -> str:
    known = selection.all_stacks(work_dir)
    if name not in known:
        raise BadRequest(f"unknown stack {name!r} (stacks in {work_dir / 'stacks'}: {', '.join(known) or 'none'})")
    return name


def _outcome(run: engine.Run) -> Outcome:
    operation = "update" if run.command == "up" else "preview"
    outcome = Outcome.from_events(run.stack, run.events, failed=run.failed, operation=operation)
    if run.failed and not outcome.errors and not outcome.blocking:
        # No diagnostic event (the engine never started): the CLI's own last error line.
        lines = [line.strip() for line in run.stderr.splitlines() if "error" in line.lower()]
        outcome.errors.append(lines[-1] if lines else f"pulumi {run.command} failed (see the job log)")
    return outcome


def cmd_preview(args: argparse.Namespace, target: engine.Target) -> tuple[int, str]:
    stacks = selection.all_stacks(target.work_dir)
    if args.stack:
        chosen = [_check_stack(s, target.work_dir) for s in args.stack]
        reason = "stacks asked for"
    elif args.changed_since:
        try:
            paths = selection.changed_paths(target.work_dir, args.changed_since)
        except ValueError as err:
            raise BadRequest(str(err)) from None
        chosen = selection.touched(paths, stacks)
        reason = f"stacks touched since {args.changed_since}"
    else:
        chosen, reason = stacks, "every stack"
    if not chosen:
        return OK, report.document("Pulumi preview", [f"No stack is touched by this change ({reason})."])
    outcomes = [_outcome(engine.preview(stack, target)) for stack in chosen]
    sections = [f"{len(chosen)} stack(s): {', '.join(f'`{s}`' for s in chosen)} ({reason}).", ""]
    sections += [report.preview_markdown(o) for o in outcomes]
    status = OK if all(o.ok for o in outcomes) else GATE_CLOSED
    return status, report.document("Pulumi preview", sections)


def cmd_deploy(args: argparse.Namespace, target: engine.Target) -> tuple[int, str]:
    stack = _check_stack(args.env, target.work_dir)
    # Refreshed first: a deploy makes the live objects match the stack, drift included (a plain
    # `up` diffs against the state alone and would leave a hand-edited field as it is).
    planned = _outcome(engine.preview(stack, target, refresh=True))
    if not planned.ok:
        why = "mandatory policy violations" if planned.blocking else "the preview failed"
        return GATE_CLOSED, report.document(f"Deploy `{stack}`: refused ({why})",
                                            [report.preview_markdown(planned)])
    done = _outcome(engine.up(stack, target, refresh=True))
    title = f"Deploy `{stack}`: {'done' if done.ok else 'FAILED'}"
    return (OK if done.ok else GATE_CLOSED), report.document(title, [report.preview_markdown(done)])


def _drill_check(values: dict, stack: str, max_age: dt.timedelta) -> drills.DrillStatus | None:
    backup = values.get("backup") or {}
    if not (isinstance(backup, dict) and backup.get("enabled") and (backup.get("drill") or {}).get("enabled")):
        return None
    kubernetes = values.get("kubernetes") or {}
    namespace = values.get("namespace")
    try:
        jobs = drills.cluster_jobs(kubernetes.get("context"), namespace)
    except Exception as err:  # noqa: BLE001 - any failure to read the cluster means "not known green"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return drills.DrillStatus(False, f"cannot read the restore drills of {stack} from its cluster: {first}")
    return drills.verdict(jobs, namespace, dt.datetime.now(dt.UTC), max_age)


def cmd_promote(args: argparse.Namespace, target: engine.Target) -> tuple[int, str]:
    from components.config import StackConfigError, validate_platform

    source = _check_stack(args.source, target.work_dir)
    dest = _check_stack(args.target, target.work_dir)
    if source == dest:
        raise BadRequest("promote FROM TO: FROM and TO are the same stack")
    src_path = target.work_dir / "stacks" / f"Pulumi.{source}.yaml"
    dst_path = target.work_dir / "stacks" / f"Pulumi.{dest}.yaml"
    rel = lambda p: f"stacks/{p.name}"  # noqa: E731 - messages name the file as the user sees it
    try:
        src_text, dst_text = promotion.read(src_path), promotion.read(dst_path)
        planned = promotion.promote_text(src_text, dst_text, rel(src_path), rel(dst_path))
        src_values = promotion.plain_values(promotion.parse(src_text, rel(src_path)))
    except promotion.PromotionError as err:
        raise BadRequest(str(err)) from None
    title = f"Promote `{source}` → `{dest}`"

    # 1. The source must be green: deployed as declared, no mandatory violation, drill passing.
    checks: list[str] = []
    source_run = _outcome(engine.preview(source, target))
    refusals: list[str] = []
    if not source_run.ok:
        refusals.append(f"the policy checks of `{source}` are not green")
    elif source_run.changed:
        refusals.append(f"`{source}` has changes that are not deployed (deploy `{source}` first: "
                        "promotion copies what ran there)")
    else:
        checks.append(f"✅ `{source}` is deployed as declared and passes its policy checks")
    drill = _drill_check(src_values, source, dt.timedelta(hours=args.drill_max_age))
    if drill is None:
        checks.append(f"ℹ️ `{source}` declares no restore drill")
    elif drill.green:
        checks.append(f"✅ {drill.reason}")
    else:
        refusals.append(drill.reason)
    changes = _changes_table(planned)
    if refusals:
        body = ["**Refused**: " + "; ".join(refusals) + ".", "", *checks, "", report.preview_markdown(source_run)]
        return GATE_CLOSED, report.document(f"{title}: refused", body)
    if not planned.changes:
        return OK, report.document(f"{title}: nothing to promote", [*checks, "", *_notes(planned)])

    # 2. The result must be a valid stack file, and its preview green at the target's level.
    try:
        validate_platform(promotion.plain_values(promotion.parse(planned.text, rel(dst_path))), dest,
                          rel(dst_path))
    except StackConfigError as err:
        return GATE_CLOSED, report.document(f"{title}: refused (the result would be invalid)",
                                            [f"- {err}", "", *changes])
    dst_path.write_text(planned.text)
    keep = False
    try:
        result = _outcome(engine.preview(dest, target))
        keep = result.ok and not args.dry_run
    finally:
        if not keep:
            dst_path.write_text(dst_text)  # a refused promotion leaves the target as it was
    if not result.ok:
        verdict = "refused (the promoted stack fails its preview)"
    else:
        verdict = "previewed (dry run: file unchanged)" if args.dry_run else f"written to stacks/{dst_path.name}"
    body = [*checks, "", *changes, *_notes(planned), report.preview_markdown(result)]
    return (OK if result.ok else GATE_CLOSED), report.document(f"{title}: {verdict}", body)


def _changes_table(planned: promotion.Promotion) -> list[str]:
    if not planned.changes:
        return []
    rows = ["| travelling field | was | becomes |", "|---|---|---|"]
    for change in planned.changes:
        was = "(default)" if change.old is None else report.value(change.old)
        becomes = "(default)" if change.new is None else report.value(change.new)
        rows.append(f"| `{change.path}` | {was} | {becomes} |")
    return rows + [""]


def _notes(planned: promotion.Promotion) -> list[str]:
    return [f"- {note}" for note in planned.notes] + ([""] if planned.notes else [])


def cmd_drift(args: argparse.Namespace, target: engine.Target) -> tuple[int, str]:
    stack = _check_stack(args.env, target.work_dir)
    outcome = _outcome(engine.preview(stack, target, refresh=True, expect_no_changes=True))
    drifted = drift_report.drifted(outcome)
    status = GATE_CLOSED if drifted or (outcome.failed and not drifted) else OK
    return status, report.document(f"Drift of `{stack}`", [drift_report.markdown(outcome)])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=engine.ROOT,
                   help="the directory holding Pulumi.yaml and stacks/ (default: the project)")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    sub = p.add_subparsers(dest="command", required=True)
    pv = sub.add_parser("preview", help="preview every stack a change touches, with the policy pack")
    pv.add_argument(
        "--stack", action="append", help="a stack to preview (repeatable); default: all, or --changed-since"
    )
    pv.add_argument("--changed-since", metavar="REF", help="only the stacks touched since the merge base with REF")
    dp = sub.add_parser("deploy", help="pulumi up of one stack, refused on mandatory violations")
    dp.add_argument("env")
    pr = sub.add_parser("promote", help="copy images and runtime settings from one stack file into the next")
    pr.add_argument("source", metavar="FROM")
    pr.add_argument("target", metavar="TO")
    pr.add_argument("--dry-run", action="store_true", help="preview the promotion, leave TO's file unchanged")
    pr.add_argument(
        "--drill-max-age",
        type=float,
        default=48.0,
        metavar="HOURS",
        help="the newest passing restore drill of FROM may be this old (default 48)",
    )
    dr = sub.add_parser("drift", help="refresh + expect-no-changes preview; report each drifted field")
    dr.add_argument("env")
    return p


COMMANDS = {"preview": cmd_preview, "deploy": cmd_deploy, "promote": cmd_promote, "drift": cmd_drift}


def main(argv: list[str] | None = None, target: engine.Target | None = None) -> int:
    args = parser().parse_args(argv)
    target = target or engine.Target()
    target.work_dir = args.work_dir.resolve() if args.work_dir else target.work_dir
    if not (target.work_dir / "Pulumi.yaml").is_file():
        print(f"error: {target.work_dir} has no Pulumi.yaml (--work-dir)", file=sys.stderr)
        return BAD_REQUEST
    try:
        status, text = COMMANDS[args.command](args, target)
    except BadRequest as err:
        print(f"error: {err}", file=sys.stderr)
        return BAD_REQUEST
    sys.stdout.write(text)
    if args.markdown:
        args.markdown.write_text(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
