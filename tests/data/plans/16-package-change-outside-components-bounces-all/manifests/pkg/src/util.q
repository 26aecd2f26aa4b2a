util:{x+2}
