"""Full-training tables a wheel ships, so that an installed snnas puts full-training accuracy beside
a search's proxy (``snnas.groundtruth.find_table``); the checkout's ``bench/results`` holds the
originals, and a test keeps the copies identical to them."""
