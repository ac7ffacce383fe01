"""Between findings and publishing: the review pipeline, new-versus-existing, diff anchors."""
