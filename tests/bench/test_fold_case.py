from bench.accuracy import fold_case, pairwise_scores, predicted_key


def test_advertising_ids_compare_in_any_case_and_other_keys_keep_theirs() -> None:
    truth = {"device_id:AB-CD": "p1", "user_id:U1": "p1", "user_id:u1": "p2"}
    predicted = {predicted_key("advertising_id", "ab-cd"): "x", "user_id:U1": "x", "user_id:u1": "y"}
    scores = pairwise_scores(fold_case(predicted), fold_case(truth))
    assert scores.precision == 1.0 and scores.recall == 1.0
    assert set(fold_case(truth)) == {"device_id:ab-cd", "user_id:U1", "user_id:u1"}
