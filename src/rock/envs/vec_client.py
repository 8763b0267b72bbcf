"""This path stays for importers; the module is ``rock.sdk.envs.vec_client``, the client side of the envs
(``rock.envs`` is the service's side): the same module object, private names included."""

import sys

from rock.sdk.envs import vec_client as _moved

sys.modules[__name__] = _moved
