"""Pins kipd.transfer' public names: changing them is a visible decision."""

import kipd.transfer


def test_public_names():
    assert kipd.transfer.__all__ == [
        "EPOCHS",
        "L2_STRENGTHS",
        "LR_FACTORS",
        "NETWORK_SEEDS",
        "PROTOCOLS",
        "GridResult",
        "GridRow",
        "StandardResult",
        "TrainState",
        "TransferOptions",
        "TransferResult",
        "critical_learning_rate",
        "empirical_ntk",
        "network",
        "objective",
        "optimizer",
        "standard_network",
        "standard_protocol",
        "train",
        "transfer",
        "transfer_run",
    ]
    public = {name for name in dir(kipd.transfer) if not name.startswith("_")}
    assert public == set(kipd.transfer.__all__)
