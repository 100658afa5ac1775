def test_launch_page_needs_login(client, db):
    response = client.get("/launch/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
