"""Bot models behind small interfaces (issue "Bot")."""
