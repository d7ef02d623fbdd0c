"""What the current Prefect run context says about a call: task, flow run and flow names."""

from __future__ import annotations

from flowcache.memoize import CallContext


def call_context(default_task_name: str) -> tuple[CallContext, bool]:
    """The call's context, and whether it runs inside a Prefect task run.

    Works in worker threads (Prefect copies its context variables into them) and degrades to
    names only when a task function is called outside any run.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    flow_ctx = FlowRunContext.get()
    run_id = None
    flow_name = None
    task_name = default_task_name
    if task_ctx is not None:
        task_name = task_ctx.task.name
        if task_ctx.task_run.flow_run_id is not None:
            run_id = str(task_ctx.task_run.flow_run_id)
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        run_id = run_id or str(flow_ctx.flow_run.id)
        flow_name = flow_ctx.flow.name if flow_ctx.flow is not None else None
    return CallContext(task_name=task_name, run_id=run_id, flow_name=flow_name), \
        task_ctx is not None
