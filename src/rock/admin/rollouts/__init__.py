"""Rollout jobs as the admin keeps them (``book.JobBook``): a job's settings, its rollout records in
arrival order (one JSONL file per job under the state dir, with each line's offset in memory) and a
light summary of each; and what the job and rollout views compute from them (``summary``). The API
(``rock.admin.jobs``) and the UI (``rock.admin.ui.jobs``) both read through here."""

from rock.admin.rollouts.book import Job, JobBook, JobNotFound

__all__ = ["Job", "JobBook", "JobNotFound"]
