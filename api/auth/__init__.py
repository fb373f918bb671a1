"""職員認証と権限: staff accounts, login, sessions, API tokens, roles, groups and grants."""
