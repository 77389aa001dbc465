"""The sample approval task: Airflow's approval operator, with the decision kept in the ledger."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from grip.airflow import tasks


class SampleApprovalOperator(ApprovalOperator):
    """Waits on the Required Actions page for the project manager to approve the sample.

    The body is the sample report in Markdown. Whatever the answer, it is recorded in the
    ledger first (who, when, the reviewer's comment, the fingerprint of the mappings the sample
    was made with); then, as Airflow's approval operator does, a rejection skips everything
    downstream, so nothing more is pushed.

    Args:
        integration_path: the integration file.
        fingerprint: the mappings' fingerprint the sample was made with (templated).
    """

    template_fields = (*ApprovalOperator.template_fields, "fingerprint")

    def __init__(self, *, integration_path: str, fingerprint: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.integration_path = integration_path
        self.fingerprint = fingerprint

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            chosen = event.get("chosen_options") or []
            self.validate_chosen_options(chosen)
            user = event.get("responded_by_user") or {}
            by = str(user.get("name") or user.get("id") or "unknown")
            comment = (event.get("params_input") or {}).get("comment") or None
            tasks.decide(
                self.integration_path,
                approved=chosen[:1] == [self.APPROVE],
                by=by,
                comment=comment,
                fingerprint=self.fingerprint or None,
            )
        return super().execute_complete(context, event)
