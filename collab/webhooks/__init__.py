"""Events told to the outside world: the publisher's task and webhook delivery."""
