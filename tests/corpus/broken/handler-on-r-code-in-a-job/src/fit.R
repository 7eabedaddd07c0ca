fit <- function() 1
