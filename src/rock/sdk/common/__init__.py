"""rl-rock's ``rock.sdk.common``: the SDK's exception types (``exceptions``)."""
