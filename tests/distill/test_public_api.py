"""Pins kipd.distill' public names: changing them is a visible decision."""

import kipd.distill


def test_public_names():
    assert kipd.distill.__all__ == [
        "LAMBDA0",
        "RCOND",
        "ComputeError",
        "Kip",
        "KipState",
        "accuracy",
        "kip",
        "kip_on_features",
        "krr_loss",
        "krr_loss_features",
        "krr_platt_loss_features",
        "krr_predict",
        "krr_predict_features",
        "label_solve",
        "ridge",
        "sample_target_batch",
    ]
    public = {name for name in dir(kipd.distill) if not name.startswith("_")}
    assert public == set(kipd.distill.__all__)
