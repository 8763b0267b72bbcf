"""This path stays for importers; the module is ``rock.sdk.envs.sandbox_env``, the client side of the envs
(``rock.envs`` is the service's side): the same module object, private names included."""

import sys

from rock.sdk.envs import sandbox_env as _moved

sys.modules[__name__] = _moved
