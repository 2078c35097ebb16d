def test_index():  # tests are not audited
    assert True
