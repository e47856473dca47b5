module cabingotest

go 1.19
