"""ROCK's configs that ship with the package (``rock-conf/rock-<env>.yml`` as ROCK names them):
``--env local`` and ``--env local-proxy`` work from any directory, also from an installed wheel.
A ``rock-conf/rock-<env>.yml`` in the working directory still wins (see rock.config_rock)."""
