-- After an operator unfreezes an account (without --keep-password) the way back in is a
-- password reset: the SMS code to the verified phone plus a second factor. Sign-in with the
-- old password and a factor (what whoever caused the freeze may still have) answers 403
-- password_reset_required instead of handing out a password_change_token.
ALTER TABLE accounts ADD COLUMN reset_required boolean NOT NULL DEFAULT false;
