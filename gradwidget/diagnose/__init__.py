"""What a history says: findings, the rules that make them, the structure of layers (numpy only)."""
