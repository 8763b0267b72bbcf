"""Volumes: a tenant's named directories that outlive its sandboxes (see ``service``).

What every front door calls (ROCK's API, SDK and CLI, the e2b door), on ``ctx.sandboxes.volumes``::

    vols.create(owner, name, size)        -> Volume        (400 bad name/size, 409 name taken)
    vols.list(owner)                      -> [Volume]
    vols.get(owner, name=..|volume_id=..) -> Volume        (404 none, or another owner's)
    await vols.delete(owner, volume)                       (409 while a live sandbox mounts it)
    vols.binds(owner, mounts)             -> [VolumeBind]  (a start's mounts, checked and resolved)
    vols.content(volume)                  -> VolumeFiles   (files in it, for the content API)
"""

from rock.admin.volumes.service import Volume, Volumes

__all__ = ["Volume", "Volumes"]
