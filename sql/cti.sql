-- astcti-server: the agents' table, exactly as the original AstCTIServer used it (Docs/cti.sql).
--
-- Load it into the database named by MYSQL_DBMS, e.g.:
--   mariadb -u root -e "CREATE DATABASE IF NOT EXISTS cti"
--   mariadb -u root cti < sql/cti.sql
--
-- Two MySQL accounts are recommended, as the original README did:
--   * the server's (MYSQL_USER/MYSQL_PASS): it only reads the table:
--       CREATE USER 'cti'@'127.0.0.1' IDENTIFIED BY 'change-me';
--       GRANT SELECT ON cti.cti TO 'cti'@'127.0.0.1';
--   * the clients' (the original AstCTIClient writes its own EXT before every login):
--       CREATE USER 'cticlient'@'%' IDENTIFIED BY 'change-me-too';
--       GRANT SELECT, UPDATE (EXT) ON cti.cti TO 'cticlient'@'%';
--
-- Columns: USERNAME = login name; SECRET = lowercase hex MD5 of the password (MySQL MD5('...'));
-- HOST = never used (may be NULL); EXT = the channel prefix the agent answers on, e.g. SIP/201,
-- PJSIP/201 or Agent/1001 (written by the client; a login with a NULL or empty EXT is refused).

DROP TABLE IF EXISTS `cti`;
CREATE TABLE `cti` (
  `USERNAME` varchar(255) default NULL,
  `SECRET` varchar(255) default NULL,
  `HOST` varchar(255) default NULL,
  `EXT` varchar(255) default NULL,
  UNIQUE KEY `USERNAME` (`USERNAME`),
  UNIQUE KEY `EXT` (`EXT`)
) ENGINE=MyISAM DEFAULT CHARSET=utf8;

-- The example user of the original: 'test' with password 'test' (MD5 098f6bcd4621d373cade4e832627b4f6).
-- The original dump gave it EXT 'SIP/300'; here it is the demo operator's phone, SIP/201.
INSERT INTO `cti` (`USERNAME`,`SECRET`,`HOST`,`EXT`)
  VALUES ('test','098f6bcd4621d373cade4e832627b4f6','0.0.0.0','SIP/201');
