"""What a pull request changes in each environment: the objects Flux would apply on the base and on
the head, compared (bot.diff.compute), secrets masked (bot.diff.mask), each change given its
one-line meaning where it has one (bot.diff.meaning)."""
