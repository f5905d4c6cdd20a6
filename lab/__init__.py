"""Lab support shared by the integration tests and the Mininet demo."""
